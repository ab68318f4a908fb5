package portal

import (
	"net/http"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/semaphore"

	"kafkasend.io/kafkasend/internal/portal/assembler"
	"kafkasend.io/kafkasend/internal/portal/offsets"
	"kafkasend.io/kafkasend/pkg/wire"
)

// heldProducer takes answers and acknowledges them only when the test says.
type heldProducer struct {
	sarama.AsyncProducer
	input     chan *sarama.ProducerMessage
	successes chan *sarama.ProducerMessage
	errors    chan *sarama.ProducerError
}

func newHeldProducer() *heldProducer {
	return &heldProducer{
		input:     make(chan *sarama.ProducerMessage, 16),
		successes: make(chan *sarama.ProducerMessage, 16),
		errors:    make(chan *sarama.ProducerError, 16),
	}
}

func (h *heldProducer) Input() chan<- *sarama.ProducerMessage        { return h.input }
func (h *heldProducer) Successes() <-chan *sarama.ProducerMessage    { return h.successes }
func (h *heldProducer) Errors() <-chan *sarama.ProducerError         { return h.errors }
func (h *heldProducer) AsyncClose()                                  { close(h.successes); close(h.errors) }
func (h *heldProducer) ackNext(t *testing.T) *sarama.ProducerMessage { return h.ack(t, <-h.input) }
func (h *heldProducer) ack(t *testing.T, m *sarama.ProducerMessage) *sarama.ProducerMessage {
	t.Helper()
	h.successes <- m
	return m
}

// answering sets up a portal whose answers wait for acknowledgements, and
// a claimed partition.
func answering(t *testing.T) (*Portal, *partition, *heldProducer) {
	t.Helper()
	p := testPortal(t, "w1")
	prod := newHeldProducer()
	p.producer = prod
	p.wg.Add(1)
	go p.successes(prod)
	t.Cleanup(func() { prod.AsyncClose(); p.wg.Wait() })
	return p, testPartition(p, 0, offsets.Commit{}), prod
}

// callDone runs what a job's goroutine does once its call returned: it
// holds a slot, and answers.
func callDone(t *testing.T, p *Portal, pt *partition, offset int64, body []byte) *flight {
	t.Helper()
	f, resp := heldFlight(t, p, pt, offset, body)
	p.respond(f, resp, defaultRoute)
	return f
}

// heldFlight takes a slot and starts the flight of a job whose call
// returned resp (not answered yet).
func heldFlight(t *testing.T, p *Portal, pt *partition, offset int64, body []byte) (*flight, *wire.Response) {
	t.Helper()
	if !p.slots.TryAcquire(1) {
		t.Fatal("no free slot for the next job")
	}
	id := wire.NewJobID()
	f := p.startFlight(pt, assembler.Result{JobID: id, Positions: []position{{Topic: testTopic, Offset: offset}}}, 0, "")
	if err := pt.tracker.Track(offset); err != nil {
		t.Fatal(err)
	}
	return f, &wire.Response{ID: id, Status: http.StatusOK, Body: body}
}

// A job whose call returned gives its slot to the next job at once: its
// answer waits for Kafka's acknowledgement without holding a slot, and its
// offset is done only once acknowledged.
func TestSlotIsFreeWhileTheAnswerAwaitsItsAcknowledgement(t *testing.T) {
	p, pt, prod := answering(t)
	p.slots = semaphore.NewWeighted(1)
	first := callDone(t, p, pt, 0, []byte("first"))
	// maxInFlight is 1: a second job can start only if the first one's
	// slot is free while its answer is unacknowledged.
	second := callDone(t, p, pt, 1, []byte("second"))
	if n, _ := pt.tracker.Committable(); n != 0 {
		t.Fatalf("commit point %d before any answer was acknowledged, want 0", n)
	}
	if p.answers.TryAcquire(p.answerBudget) {
		t.Fatal("the answer budget shows no unacknowledged answers")
	}
	if in, ans := gauge(t, p.metrics.inFlight), gauge(t, p.metrics.answering); in != 0 || ans != 2 {
		t.Fatalf("in_flight_jobs %v, answering_jobs %v; want 0 and 2", in, ans)
	}
	prod.ackNext(t)
	prod.ackNext(t)
	for _, f := range []*flight{first, second} {
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("job %s not finished after its acknowledgement", f.id)
		}
	}
	if n, ok := pt.tracker.Committable(); !ok || n != 2 {
		t.Fatalf("commit point %d (ok %v) after both answers were acknowledged, want 2", n, ok)
	}
	if !p.answers.TryAcquire(p.answerBudget) {
		t.Fatal("the answer budget was not given back on acknowledgement")
	}
	if in, ans := gauge(t, p.metrics.inFlight), gauge(t, p.metrics.answering); in != 0 || ans != 0 {
		t.Fatalf("in_flight_jobs %v, answering_jobs %v after the acknowledgements; want 0 and 0", in, ans)
	}
}

// While the answer budget is spent (Kafka does not acknowledge), a job
// whose call returned keeps its slot: the worker stops taking jobs rather
// than hold more answers than the budget.
func TestSpentAnswerBudgetKeepsTheSlot(t *testing.T) {
	p, pt, prod := answering(t)
	p.slots = semaphore.NewWeighted(1)
	if !p.answers.TryAcquire(p.answerBudget) {
		t.Fatal("answer budget not free at start")
	}
	f, resp := heldFlight(t, p, pt, 0, []byte("held"))
	answered := make(chan struct{})
	go func() { defer close(answered); p.respond(f, resp, defaultRoute) }()
	// For half a second (ample to reach the budget), the slot stays taken
	// and nothing is produced.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if p.slots.TryAcquire(1) {
			t.Fatal("the slot was freed although the answer budget is spent")
		}
		select {
		case <-prod.input:
			t.Fatal("an answer was produced beyond the answer budget")
		case <-answered:
			t.Fatal("the answer was sent beyond the answer budget")
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.answers.Release(p.answerBudget)
	<-answered
	m := prod.ackNext(t)
	if got := string(m.Key.(sarama.StringEncoder)); got != f.id {
		t.Fatalf("produced answer of %q, want %q", got, f.id)
	}
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("job not finished after its acknowledgement")
	}
	if !p.slots.TryAcquire(1) {
		t.Fatal("slot not free after the answer was acknowledged")
	}
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
