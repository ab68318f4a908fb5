// Package kafka_test checks the Kafka test bed end to end with sarama: the
// features the portal relies on (idempotent keyed produce with headers,
// consumer groups, offset commits, lag) behave on the cluster the tests get.
//
// It runs against an in-process kfake cluster by default and against Apache
// Kafka when KAFKASEND_TEST_BROKERS is set:
//
//	KAFKASEND_TEST_BROKERS=$(hack/kafka.sh start) go test -count=1 ./test/kafka/
package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
)

const (
	numMessages = 600
	numKeys     = 12
	partitions  = 3
	// consumeTimeout bounds each consumer-group run, join included.
	consumeTimeout = 45 * time.Second
)

// sent is what the test produced for one message, by sequence number.
type sent struct {
	key       string
	value     []byte
	headers   []sarama.RecordHeader
	partition int32
	offset    int64
}

func TestSmokeProduceConsumeCommit(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	t.Logf("cluster: %s %v, protocol version %s", kafkatest.Kind(), brokers, kafkatest.SaramaConfig().Version)
	topic := kafkatest.CreateTopic(t, brokers, partitions)
	group := topic + "-group"

	began := time.Now()
	want := produce(t, brokers, topic, 0, numMessages)
	t.Logf("produced %d messages in %s", numMessages, time.Since(began).Round(time.Millisecond))

	used := map[int32]bool{}
	for _, m := range want {
		used[m.partition] = true
	}
	if len(used) != partitions {
		t.Errorf("messages landed in %d partitions, want all %d (keys are spread by hash)", len(used), partitions)
	}

	// The log end offsets count every record once: the idempotent producer
	// wrote no duplicates.
	ends := logEndOffsets(t, brokers, topic)
	var total int64
	for _, end := range ends {
		total += end
	}
	if total != numMessages {
		t.Fatalf("log end offsets add up to %d records, want %d", total, numMessages)
	}

	began = time.Now()
	got := consume(t, brokers, group, topic, numMessages)
	t.Logf("consumed %d messages with group %s in %s (join included)", len(got), group, time.Since(began).Round(time.Millisecond))
	checkExactlyOnce(t, want, got)
	checkLag(t, brokers, group, topic, ends)

	// A new member of the group resumes at the committed offsets: it gets
	// the one message produced after the commit and nothing older.
	more := produce(t, brokers, topic, numMessages, 1)
	extra := map[int]sent{numMessages: more[numMessages]}
	ends[more[numMessages].partition]++
	began = time.Now()
	got = consume(t, brokers, group, topic, 1)
	t.Logf("resumed group in %s", time.Since(began).Round(time.Millisecond))
	checkExactlyOnce(t, extra, got)
	checkLag(t, brokers, group, topic, ends)
}

// produce sends count messages with sequence numbers from first on, with an
// idempotent synchronous producer, in batches, and returns what it sent.
func produce(t *testing.T, brokers []string, topic string, first, count int) map[int]sent {
	t.Helper()
	cfg := kafkatest.SaramaConfig()
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = 5
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatalf("creating producer: %v", err)
	}
	defer func() {
		if err := producer.Close(); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	}()

	out := make(map[int]sent, count)
	const batch = 100
	for start := first; start < first+count; start += batch {
		var msgs []*sarama.ProducerMessage
		for seq := start; seq < min(start+batch, first+count); seq++ {
			key := fmt.Sprintf("job-%02d", seq%numKeys)
			value := payload(seq)
			headers := []sarama.RecordHeader{
				{Key: []byte("seq"), Value: []byte(strconv.Itoa(seq))},
				{Key: []byte("binary"), Value: []byte{0, 1, 0xfe, 0xff, byte(seq)}},
				{Key: []byte("empty"), Value: []byte{}},
			}
			out[seq] = sent{key: key, value: value, headers: headers}
			msgs = append(msgs, &sarama.ProducerMessage{
				Topic:    topic,
				Key:      sarama.StringEncoder(key),
				Value:    sarama.ByteEncoder(value),
				Headers:  headers,
				Metadata: seq,
			})
		}
		if err := producer.SendMessages(msgs); err != nil {
			t.Fatalf("producing messages %d..%d: %v", start, start+len(msgs)-1, err)
		}
		for _, m := range msgs {
			s := out[m.Metadata.(int)]
			s.partition, s.offset = m.Partition, m.Offset
			out[m.Metadata.(int)] = s
		}
	}
	return out
}

// payload is a binary value that differs per message, with every byte value.
func payload(seq int) []byte {
	v := []byte(fmt.Sprintf("message %d\x00", seq))
	for b := range 256 {
		v = append(v, byte(b+seq))
	}
	return v
}

// collector is a consumer-group handler that passes every message on and
// marks it; it commits the marked offsets once, when the session ends.
type collector struct {
	out chan<- *sarama.ConsumerMessage
}

func (c collector) Setup(sarama.ConsumerGroupSession) error { return nil }

func (c collector) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	return nil
}

func (c collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case c.out <- m:
				s.MarkMessage(m, "")
			case <-s.Context().Done():
				return nil
			}
		}
	}
}

// consume runs a consumer group member until it has seen want distinct
// records, then leaves the group (committing on the way out) and returns
// every message delivered, duplicates included.
func consume(t *testing.T, brokers []string, group, topic string, want int) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := kafkatest.SaramaConfig()
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		t.Fatalf("creating consumer group %s: %v", group, err)
	}
	var (
		closeOnce sync.Once
		errsDone  = make(chan struct{})
	)
	go func() {
		defer close(errsDone)
		for err := range cg.Errors() {
			t.Logf("consumer group error: %v", err)
		}
	}()
	closeGroup := func() {
		closeOnce.Do(func() {
			if err := cg.Close(); err != nil {
				t.Errorf("closing consumer group: %v", err)
			}
			<-errsDone
		})
	}
	defer closeGroup()

	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	// Room for every record twice, so that a duplicate never blocks a claim.
	msgs := make(chan *sarama.ConsumerMessage, 2*want+2*numMessages)
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, collector{out: msgs}); err != nil &&
				!errors.Is(err, sarama.ErrClosedConsumerGroup) && !errors.Is(err, context.Canceled) {
				done <- fmt.Errorf("consuming: %w", err)
				return
			}
		}
		done <- nil
	}()

	var got []*sarama.ConsumerMessage
	seen := map[[2]int64]bool{}
	for len(seen) < want && ctx.Err() == nil {
		select {
		case m := <-msgs:
			got = append(got, m)
			seen[[2]int64{int64(m.Partition), m.Offset}] = true
		case <-ctx.Done():
		}
	}
	if len(seen) < want {
		t.Fatalf("consumed %d of %d records within %s", len(seen), want, consumeTimeout)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("consumer group %s: %v", group, err)
	}
	closeGroup()
	for {
		select {
		case m := <-msgs:
			got = append(got, m)
		default:
			return got
		}
	}
}

// checkExactlyOnce compares the consumed messages with those sent: each
// exactly once, intact, and in production order per key.
func checkExactlyOnce(t *testing.T, want map[int]sent, got []*sarama.ConsumerMessage) {
	t.Helper()
	lastSeq := map[string]int{}
	seen := map[int]bool{}
	for _, m := range got {
		seq, err := strconv.Atoi(string(header(m, "seq")))
		if err != nil {
			t.Errorf("partition %d offset %d: bad seq header: %v", m.Partition, m.Offset, err)
			continue
		}
		w, ok := want[seq]
		if !ok {
			t.Errorf("unexpected message seq %d at partition %d offset %d", seq, m.Partition, m.Offset)
			continue
		}
		if seen[seq] {
			t.Errorf("message seq %d delivered more than once", seq)
		}
		seen[seq] = true
		if string(m.Key) != w.key {
			t.Errorf("seq %d: key %q, want %q", seq, m.Key, w.key)
		}
		if !bytes.Equal(m.Value, w.value) {
			t.Errorf("seq %d: value differs (%d bytes, want %d)", seq, len(m.Value), len(w.value))
		}
		if m.Partition != w.partition || m.Offset != w.offset {
			t.Errorf("seq %d: at partition %d offset %d, producer reported %d/%d", seq, m.Partition, m.Offset, w.partition, w.offset)
		}
		if len(m.Headers) != len(w.headers) {
			t.Errorf("seq %d: %d headers, want %d", seq, len(m.Headers), len(w.headers))
		} else {
			for i, h := range m.Headers {
				if !bytes.Equal(h.Key, w.headers[i].Key) || !bytes.Equal(h.Value, w.headers[i].Value) {
					t.Errorf("seq %d: header %d is %q=%x, want %q=%x", seq, i, h.Key, h.Value, w.headers[i].Key, w.headers[i].Value)
				}
			}
		}
		if last, ok := lastSeq[w.key]; ok && seq <= last {
			t.Errorf("key %s: seq %d arrived after seq %d", w.key, seq, last)
		}
		lastSeq[w.key] = seq
	}
	for seq := range want {
		if !seen[seq] {
			t.Errorf("message seq %d never arrived", seq)
		}
	}
}

func header(m *sarama.ConsumerMessage, key string) []byte {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return h.Value
		}
	}
	return nil
}

// logEndOffsets returns the newest offset of each partition of topic.
func logEndOffsets(t *testing.T, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	client, err := sarama.NewClient(brokers, kafkatest.SaramaConfig())
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	defer client.Close()
	ends := map[int32]int64{}
	for p := range int32(partitions) {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("getting log end offset of partition %d: %v", p, err)
		}
		ends[p] = end
	}
	return ends
}

// checkLag asserts, through the admin API, that the group's committed offset
// of each partition equals the log end offset: lag 0.
func checkLag(t *testing.T, brokers []string, group, topic string, ends map[int32]int64) {
	t.Helper()
	if got := logEndOffsets(t, brokers, topic); !maps.Equal(got, ends) {
		t.Fatalf("log end offsets are %v, want %v", got, ends)
	}
	admin := kafkatest.Admin(t, brokers)
	ids := make([]int32, 0, partitions)
	for p := range int32(partitions) {
		ids = append(ids, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ids})
	if err != nil {
		t.Fatalf("listing offsets of group %s: %v", group, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		t.Fatalf("listing offsets of group %s: %v", group, resp.Err)
	}
	for _, p := range ids {
		block := resp.GetBlock(topic, p)
		if block == nil {
			t.Errorf("partition %d: no committed offset", p)
			continue
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			t.Errorf("partition %d: %v", p, block.Err)
			continue
		}
		if lag := ends[p] - block.Offset; lag != 0 {
			t.Errorf("partition %d: committed %d, log end %d: lag %d, want 0", p, block.Offset, ends[p], lag)
		}
	}
}
