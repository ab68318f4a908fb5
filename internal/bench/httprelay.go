package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	portalupstream "kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

// httpRelay is the limit of doing the portal's HTTP work with nothing
// else: a consumer-group member with the portal's Kafka settings that, for
// each request record, POSTs the record's value to the upstream (one
// keep-alive net/http client, at most maxInFlight calls at once) and
// produces the upstream's answer as one record with the request's key and
// headers. No reassembly, path policy, OAuth, metrics or wire framing. The
// bench upstream echoes the body, so the answer is the request chunk again
// and the collector checks it as it checks the echo relay's. A record's
// offset is marked for commit only once its answer is acknowledged, in
// offset order per partition; up to maxInFlight answers may await their
// acknowledgement beside the maxInFlight calls.
type httpRelay struct {
	group    sarama.ConsumerGroup
	producer sarama.AsyncProducer
	client   *http.Client
	url      string
	replies  string
	calls    chan struct{}
	acks     chan struct{}
	ready    chan struct{}
	once     sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
	produced sync.WaitGroup

	mu  sync.Mutex
	err error
}

// pendingAnswer travels with a produced answer as its metadata.
type pendingAnswer struct {
	s       sarama.ConsumerGroupSession
	tr      *offsetTracker
	seq     uint64
	topic   string
	part    int32
	claimWG *sync.WaitGroup
}

func startHTTPRelay(ctx context.Context, spec childSpec) (*httpRelay, error) {
	if spec.MaxInFlight < 1 || spec.URL == "" {
		return nil, fmt.Errorf("http relay: want an upstream URL and maxInFlight >= 1, got %q and %d", spec.URL, spec.MaxInFlight)
	}
	// The portal's own Kafka settings (consumer group, commits, fetches,
	// the idempotent answer producer), from the project's defaults.
	cfg := config.Default()
	cfg.Kafka.Brokers, cfg.Kafka.ClientID = spec.Brokers, "kafkasend-bench-http-relay"
	cfg.Concurrency.MaxInFlight = spec.MaxInFlight
	if spec.MaxMessageBytes > 0 {
		cfg.Kafka.MaxMessageBytes = spec.MaxMessageBytes
	}
	sc, pc, err := portal.KafkaConfigs(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	producer, err := sarama.NewAsyncProducer(spec.Brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("creating the HTTP relay's producer: %w", err)
	}
	g, err := sarama.NewConsumerGroup(spec.Brokers, spec.Group, sc)
	if err != nil {
		_ = producer.Close()
		return nil, fmt.Errorf("creating the HTTP relay's consumer group: %w", err)
	}
	// The portal's own upstream transport: keep-alive connections, an idle
	// pool of maxInFlight, and h2c when the upstream speaks it.
	http2 := config.HTTP2Auto
	if spec.H2C {
		http2 = config.HTTP2Always
	}
	transport, err := portalupstream.NewTransport("", spec.MaxInFlight, http2)
	if err != nil {
		_ = producer.Close()
		_ = g.Close()
		return nil, fmt.Errorf("the HTTP relay's transport: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &httpRelay{group: g, producer: producer, client: &http.Client{Transport: transport}, url: spec.URL,
		replies: spec.Replies, calls: make(chan struct{}, spec.MaxInFlight), acks: make(chan struct{}, spec.MaxInFlight),
		ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	r.produced.Add(2)
	go func() {
		defer r.produced.Done()
		for m := range producer.Successes() {
			r.acknowledged(m, nil)
		}
	}()
	go func() {
		defer r.produced.Done()
		for pe := range producer.Errors() {
			r.acknowledged(pe.Msg, pe.Err)
		}
	}()
	go func() {
		for ge := range g.Errors() {
			r.fail(fmt.Errorf("http relay consumer group: %w", ge))
		}
	}()
	go func() {
		defer close(r.done)
		for rctx.Err() == nil {
			if err := g.Consume(rctx, []string{spec.Requests}, r); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) || rctx.Err() != nil {
					return
				}
				r.fail(err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-r.ready:
		return r, nil
	case <-time.After(60 * time.Second):
		_ = r.close()
		return nil, errors.New("http relay did not join its group within 60s")
	}
}

func (r *httpRelay) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Setup implements sarama.ConsumerGroupHandler.
func (r *httpRelay) Setup(sarama.ConsumerGroupSession) error {
	r.once.Do(func() { close(r.ready) })
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler.
func (r *httpRelay) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim implements sarama.ConsumerGroupHandler: one call per
// record, at most maxInFlight at once over all partitions. It returns when
// the session ends, once the claim's answers are acknowledged (so that
// their offsets are marked within the session).
func (r *httpRelay) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	tr := &offsetTracker{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case r.calls <- struct{}{}:
			case <-s.Context().Done():
				return nil
			}
			wg.Add(1)
			p := &pendingAnswer{s: s, tr: tr, seq: tr.add(m.Offset), topic: m.Topic, part: m.Partition, claimWG: &wg}
			go r.call(m, p)
		case <-s.Context().Done():
			return nil
		}
	}
}

// call makes the record's HTTP call and hands the answer to the producer.
func (r *httpRelay) call(m *sarama.ConsumerMessage, p *pendingAnswer) {
	body, err := r.exchange(m)
	<-r.calls
	if err != nil {
		r.fail(fmt.Errorf("job %s: %w", m.Key, err))
		p.claimWG.Done()
		return
	}
	headers := make([]sarama.RecordHeader, len(m.Headers))
	for i, h := range m.Headers {
		headers[i] = *h
	}
	r.acks <- struct{}{}
	r.producer.Input() <- &sarama.ProducerMessage{Topic: r.replies, Partition: wire.NoPartition,
		Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(body), Headers: headers, Metadata: p}
}

// exchange POSTs the record's value to the upstream and returns the body of
// its 200 answer.
func (r *httpRelay) exchange(m *sarama.ConsumerMessage) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(m.Value))
	if err != nil {
		return nil, fmt.Errorf("building the upstream request: %w", err)
	}
	req.Header = http.Header{"Content-Type": {"application/octet-stream"}, "Idempotency-Key": {string(m.Key)},
		"User-Agent": {"kafkasend-bench-http-relay"}}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the upstream: %w", err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.ContentLength >= 0 {
		body = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, body)
	} else {
		body, err = io.ReadAll(resp.Body)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upstream answered %s: %s", resp.Status, truncate(body, 200))
	}
	return body, nil
}

// acknowledged settles a produced answer: on success its offset (and any
// before it that are settled) is marked for commit; a failed produce is
// not marked, and the job stays unanswered.
func (r *httpRelay) acknowledged(m *sarama.ProducerMessage, err error) {
	<-r.acks
	p, _ := m.Metadata.(*pendingAnswer)
	if p == nil {
		return
	}
	defer p.claimWG.Done()
	if err != nil {
		r.fail(fmt.Errorf("producing an answer: %w", err))
		return
	}
	if next, ok := p.tr.done(p.seq); ok {
		p.s.MarkOffset(p.topic, p.part, next, "")
	}
}

// close leaves the group (once every claimed record is answered and
// acknowledged) and closes the producer.
func (r *httpRelay) close() error {
	r.cancel()
	<-r.done
	errs := []error{r.group.Close(), r.producer.Close()}
	r.produced.Wait()
	r.mu.Lock()
	errs = append(errs, r.err)
	r.mu.Unlock()
	return errors.Join(errs...)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// offsetTracker orders the completions of one partition's records: records
// are added in offset order and may finish in any order; done returns the
// offset to commit next (one past the highest offset below which every
// record has finished) when it moved.
type offsetTracker struct {
	mu      sync.Mutex
	first   uint64 // sequence number of entries[0]
	entries []trackedOffset
}

type trackedOffset struct {
	offset int64
	done   bool
}

// add registers the next record of the partition and returns its sequence
// number.
func (t *offsetTracker) add(offset int64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, trackedOffset{offset: offset})
	return t.first + uint64(len(t.entries)) - 1
}

// done settles record seq and returns the next offset to commit, and
// whether it moved.
func (t *offsetTracker) done(seq uint64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < t.first || seq-t.first >= uint64(len(t.entries)) {
		return 0, false
	}
	t.entries[seq-t.first].done = true
	n := 0
	for n < len(t.entries) && t.entries[n].done {
		n++
	}
	if n == 0 {
		return 0, false
	}
	next := t.entries[n-1].offset + 1
	t.entries = t.entries[n:]
	t.first += uint64(n)
	return next, true
}
