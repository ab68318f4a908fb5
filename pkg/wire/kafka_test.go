package wire

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The broker's limit in these tests, small so that a job needs many chunks.
const testMaxMessageBytes = 2048

func startBroker(t *testing.T) string {
	t.Helper()
	metrics.UseNilMetrics = true
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(2, "requests"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2048"}),
	)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.MaxMessageBytes = testMaxMessageBytes
	cfg.Producer.Partitioner = NewPartitioner
	cfg.Consumer.Return.Errors = true
	return cfg
}

// consumeAll reads every record of topic/partition from the start until n
// records have arrived.
func consumeAll(t *testing.T, addr, topic string, partition int32, n int) []*sarama.ConsumerMessage {
	t.Helper()
	consumer, err := sarama.NewConsumer([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume partition: %v", err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Fatalf("consuming: %v", err)
		case <-timeout:
			t.Fatalf("got %d of %d records", len(out), n)
		}
	}
	return out
}

func assemble(t *testing.T, msgs []*sarama.ConsumerMessage) (string, []byte) {
	t.Helper()
	chunks := make([]Chunk, len(msgs))
	for i, m := range msgs {
		c, err := ParseChunk(m.Key, m.Headers, m.Value)
		if err != nil {
			t.Fatalf("ParseChunk(offset %d): %v", m.Offset, err)
		}
		chunks[i] = c
	}
	payload, err := Join(chunks)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	return chunks[0].JobID, payload
}

// TestThroughKafka produces a job split for the broker's message.max.bytes
// through sarama and reads it back: every chunk is accepted by the broker,
// lands in one partition in order, and reassembles to the request.
func TestThroughKafka(t *testing.T) {
	addr := startBroker(t)
	producer, err := sarama.NewSyncProducer([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()

	req := &Request{ID: NewJobID(), Method: "POST", Path: "/upload", Body: bigBody(20 << 10),
		Header: http2("Content-Type", "application/octet-stream"), ReplyPartition: 1}
	msgs, err := RequestMessages("requests", 1, req, testMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 10 {
		t.Fatalf("only %d chunks for 20 KiB at %d bytes per message", len(msgs), testMaxMessageBytes)
	}
	if err := producer.SendMessages(msgs); err != nil {
		t.Fatalf("broker refused a chunk: %v", err)
	}
	got := consumeAll(t, addr, "requests", 1, len(msgs))
	id, payload := assemble(t, got)
	dec, err := DecodeRequest(payload)
	if err != nil {
		t.Fatal(err)
	}
	dec.ID = id
	assertRequestsEqual(t, dec, req)

	// A record 200 bytes over the budget is refused: the broker enforces the
	// limit, and the budget (conservative like sarama's own estimate, by
	// about 100 bytes) does not waste much.
	over := ProducerMessages("requests", 0, []Chunk{{JobID: "x", Type: TypeRequest, Count: 1,
		Data: make([]byte, ChunkDataBudget("x", testMaxMessageBytes)+200)}})
	cfg := saramaConfig()
	cfg.Producer.MaxMessageBytes = 1 << 20
	big, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if err := big.SendMessages(over); err == nil {
		t.Fatal("the broker accepted a record larger than message.max.bytes; the test proves nothing")
	}
}

func http2(k, v string) map[string][]string { return map[string][]string{k: {v}} }

// TestKcatProducesDocumentedExample produces the worked example of
// docs/protocol.md with kcat, a Kafka client this project did not write,
// exactly as the document shows, and decodes it.
func TestKcatProducesDocumentedExample(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	addr := startBroker(t)
	value, _ := hex.DecodeString(goldenValueHex)
	file := filepath.Join(t.TempDir(), "job.bin")
	if err := os.WriteFile(file, value, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The command of docs/protocol.md, "Producing a job with kcat".
	cmd := exec.CommandContext(ctx, kcat, "-P", "-b", addr, "-t", "requests", "-p", "0", "-k", "job-42",
		"-H", "ks-version=1", "-H", "ks-type=request", "-H", "ks-chunk=0", "-H", "ks-chunks=1",
		"-H", "ks-size=230", "-H", "ks-crc32c=86444bf6", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	msgs := consumeAll(t, addr, "requests", 0, 1)
	id, payload := assemble(t, msgs)
	dec, err := DecodeRequest(payload)
	if err != nil {
		t.Fatal(err)
	}
	dec.ID = id
	assertRequestsEqual(t, dec, goldenRequest())

	// And kcat shows the headers of what this package produces.
	producer, err := sarama.NewSyncProducer([]string{addr}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	resp, err := ResponseMessages("requests", 1, &Response{ID: "job-42", Status: 200, Body: []byte("hi")}, testMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.SendMessages(resp); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", "requests", "-p", "1", "-o", "beginning", "-e", "-q",
		"-f", `%k|%h|%S\n`).CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	p, _ := EncodeResponse(&Response{Status: 200, Body: []byte("hi")})
	want := fmt.Sprintf("job-42|ks-version=1,ks-type=response,ks-chunk=0,ks-chunks=1,ks-size=%d,ks-crc32c=%08x|%d",
		len(p), ChecksumOf(p), len(p))
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("kcat -C printed %q, want %q", got, want)
	}
	if !bytes.HasPrefix(p, []byte("KS\x01\x02")) {
		t.Errorf("response prefix % x", p[:4])
	}
}
