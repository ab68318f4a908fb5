// Package jobtest is a test requester: it produces jobs in the wire format
// and collects the responses from a reply topic, recording when each
// arrived and whether any job was answered twice.
package jobtest

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Requester sends jobs.
type Requester struct {
	t        testing.TB
	producer sarama.SyncProducer
	topic    string
	maxBytes int
}

// NewRequester returns a requester producing to topic, chunking payloads to
// maxMessageBytes.
func NewRequester(t testing.TB, brokers []string, topic string, maxMessageBytes int) *Requester {
	t.Helper()
	c := kafkatest.SaramaConfig()
	kafkaconf.ChunkProducer(c, maxMessageBytes)
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatalf("requester producer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &Requester{t: t, producer: p, topic: topic, maxBytes: maxMessageBytes}
}

// Send produces one job and returns when Kafka acknowledged all its chunks.
func (r *Requester) Send(req *wire.Request) error {
	msgs, err := wire.RequestMessages(r.topic, wire.NoPartition, req, r.maxBytes)
	if err != nil {
		return err
	}
	return r.producer.SendMessages(msgs)
}

// SendMessages produces hand-made messages (to test malformed input).
func (r *Requester) SendMessages(msgs []*sarama.ProducerMessage) error {
	return r.producer.SendMessages(msgs)
}

// Arrival is one complete response.
type Arrival struct {
	Response *wire.Response
	At       time.Time
}

// Collector reads every partition of a reply topic from the start.
type Collector struct {
	mu         sync.Mutex
	partial    map[string]map[int]wire.Chunk
	arrived    map[string]Arrival
	duplicates map[string]int
	errs       []error
	changed    chan struct{}
}

// NewCollector starts consuming topic; it stops at test cleanup.
func NewCollector(t testing.TB, brokers []string, topic string) *Collector {
	t.Helper()
	c := kafkatest.SaramaConfig()
	consumer, err := sarama.NewConsumer(brokers, c)
	if err != nil {
		t.Fatalf("collector consumer: %v", err)
	}
	parts, err := consumer.Partitions(topic)
	if err != nil {
		t.Fatalf("collector partitions: %v", err)
	}
	col := &Collector{
		partial: map[string]map[int]wire.Chunk{}, arrived: map[string]Arrival{},
		duplicates: map[string]int{}, changed: make(chan struct{}, 1),
	}
	var wg sync.WaitGroup
	var pcs []sarama.PartitionConsumer
	for _, part := range parts {
		pc, err := consumer.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("collector partition %d: %v", part, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range pc.Messages() {
				col.add(m)
			}
		}()
		pcs = append(pcs, pc)
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
		_ = consumer.Close()
	})
	return col
}

func (c *Collector) add(m *sarama.ConsumerMessage) {
	now := time.Now()
	ch, err := wire.ParseChunk(m.Key, m.Headers, m.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("offset %d: %w", m.Offset, err))
		return
	}
	ch.Data = append([]byte(nil), ch.Data...)
	p := c.partial[ch.JobID]
	if p == nil {
		p = map[int]wire.Chunk{}
		c.partial[ch.JobID] = p
	}
	p[ch.Index] = ch
	if len(p) < ch.Count {
		return
	}
	delete(c.partial, ch.JobID)
	chunks := make([]wire.Chunk, 0, len(p))
	for i := range ch.Count {
		chunks = append(chunks, p[i])
	}
	payload, err := wire.Join(chunks)
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("job %s: %w", ch.JobID, err))
		return
	}
	resp, err := wire.DecodeResponse(payload)
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("job %s: %w", ch.JobID, err))
		return
	}
	if _, seen := c.arrived[ch.JobID]; seen {
		c.duplicates[ch.JobID]++
		return
	}
	c.arrived[ch.JobID] = Arrival{Response: resp, At: now}
}

func (c *Collector) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Wait returns when every id has a response or timeout passes; it reports
// the ids still missing.
func (c *Collector) Wait(ids []string, timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		missing := c.Missing(ids)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			return missing
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Missing lists the ids without a response.
func (c *Collector) Missing(ids []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := c.arrived[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Get returns the response of id.
func (c *Collector) Get(id string) (Arrival, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.arrived[id]
	return a, ok
}

// Duplicates returns the jobs answered more than once, with the extra count.
func (c *Collector) Duplicates() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.duplicates))
	for k, v := range c.duplicates {
		out[k] = v
	}
	return out
}

// Errors returns reply messages that could not be decoded.
func (c *Collector) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// Count is the number of jobs answered.
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.arrived)
}
