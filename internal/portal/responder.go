package portal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/util/wait"

	"kafkasend.io/kafkasend/internal/portal/assembler"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Dead-letter headers added to a copy of the original message.
const (
	HeaderDLQReason    = "ks-dlq-reason"
	HeaderDLQTopic     = "ks-dlq-topic"
	HeaderDLQPartition = "ks-dlq-partition"
	HeaderDLQOffset    = "ks-dlq-offset"
)

// A failed answer is retried this many times (with backoff, about two
// minutes in all: a broker restart) before it is dead-lettered; an answer
// Kafka can never take (a reply partition out of range, a record too
// large) is dead-lettered at once.
const (
	maxProduceAttempts = 12
	maxDeadLetterTries = 3
)

// flight is one job from assembly to the acknowledgement of its answer.
type flight struct {
	id      string
	part    *partition
	started time.Time
	// bytes of the assembled payload to give back to the assembler.
	bytes int64
	// slot is true when the flight holds an in-flight slot; answer is its
	// weight in the answer budget once it holds that instead (its answer
	// is being produced).
	slot   bool
	answer int64
	cancel context.CancelFunc
	// leasedFrom names the worker that ran the job before this one took it
	// over (its lease lapsed).
	leasedFrom string

	// Guarded by Portal.mu.
	positions []position
	route     wire.Routing
	abandoned bool
	finished  bool
	outcome   wire.ErrorKind
	released  bool

	sent     time.Time    // when the answer went to the producer
	pending  atomic.Int32 // answer messages not yet acknowledged
	attempts atomic.Int32 // failed produce attempts
	done     chan struct{}
}

// startFlight registers a job that will be answered. It holds a slot.
func (p *Portal) startFlight(pt *partition, res assembler.Result, bytes int64, leasedFrom string) *flight {
	started := time.Now()
	if len(res.Positions) > 1 { // only multi-chunk jobs have a first-seen time
		if t, ok := p.firstSeen.LoadAndDelete(res.JobID); ok {
			started = t.(time.Time)
		}
	}
	f := &flight{
		id: res.JobID, part: pt, started: started, bytes: bytes, slot: true, leasedFrom: leasedFrom,
		positions: res.Positions, route: defaultRoute, done: make(chan struct{}),
	}
	p.mu.Lock()
	if old := p.inflight[f.id]; old != nil && !old.finished {
		// The same job ID is in flight already (a requester reused an ID
		// after the recent-jobs memory forgot it): keep both answers apart.
		p.log.Info("Job ID already in flight; executing the new copy too", "job", f.id)
	}
	p.inflight[f.id] = f
	p.mu.Unlock()
	if !pt.addFlight(f) {
		// Released between reading the job and starting it: its offsets are
		// not committed, so the next owner runs it; do not run it here.
		p.mu.Lock()
		f.abandoned = true
		p.mu.Unlock()
	}
	p.metrics.inFlight.Inc()
	return f
}

// execute runs one upstream call and answers the job.
func (p *Portal) execute(ctx context.Context, f *flight, req *wire.Request) {
	p.mu.Lock()
	abandoned := f.abandoned
	p.mu.Unlock()
	var resp *wire.Response
	if !abandoned {
		resp = p.exec.Do(ctx, req)
	}
	// The request payload is no longer used: give its bytes back to the
	// budget now rather than when the answer is acknowledged.
	p.releaseBytes(f)
	p.mu.Lock()
	abandoned = f.abandoned
	route := f.route
	p.mu.Unlock()
	if abandoned {
		p.release(f, false)
		return
	}
	p.respond(f, resp, route)
}

// releaseBytes gives a flight's assembled payload bytes back to the budget.
func (p *Portal) releaseBytes(f *flight) {
	p.mu.Lock()
	n := f.bytes
	f.bytes = 0
	p.mu.Unlock()
	if n > 0 {
		if err := p.asm.Release(n); err != nil {
			p.log.Error(err, "Releasing assembly bytes", "job", f.id)
		}
	}
}

func errorResponse(id string, kind wire.ErrorKind, err error) *wire.Response {
	return wire.ErrorResponse(id, kind, err.Error())
}

// answerError answers a job with an error, where its requester listens
// when that is allowed.
func (p *Portal) answerError(f *flight, kind wire.ErrorKind, err error, route wire.Routing) {
	p.mu.Lock()
	f.route = route
	p.mu.Unlock()
	p.jobs.Add(1)
	go func() { // off the consume path, like the calls
		defer p.jobs.Done()
		if cerr := p.checkReplyTarget(route); cerr != nil {
			p.refuseReplyTarget(f, route, cerr)
			return
		}
		p.respond(f, errorResponse(f.id, kind, err), route)
	}()
}

// errReplyTarget marks a reply target Kafka cannot take.
var errReplyTarget = errors.New("reply target")

// errReplyTopicRefused marks a reply topic the pipeline does not allow.
var errReplyTopicRefused = errors.New("reply topic not allowed")

// checkReplyTarget refuses, before any call, a reply topic the pipeline
// does not allow, a topic that does not exist and a partition out of range.
func (p *Portal) checkReplyTarget(r wire.Routing) error {
	topic := r.ReplyTopic
	if !p.cfg.Topics.ReplyTopicAllowed(topic) {
		return fmt.Errorf("%w: %q (allowed: %s)", errReplyTopicRefused, topic, p.allowedReplyTopics())
	}
	if topic == "" {
		topic = p.cfg.Topics.Replies
	}
	if r.ReplyPartition < 0 && topic == p.cfg.Topics.Replies {
		return nil // the pipeline's own topic, placed by key: nothing to check
	}
	if v, ok := p.missingTopics.Load(topic); ok && time.Now().Before(v.(time.Time)) {
		return fmt.Errorf("%w: topic %q does not exist", errReplyTarget, topic)
	}
	parts, err := p.meta.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		// Remembered for a while: every job naming it would otherwise cost
		// a metadata round trip on the partition's consume path.
		p.missingTopics.Store(topic, time.Now().Add(missingTopicTTL))
		return fmt.Errorf("%w: topic %q does not exist", errReplyTarget, topic)
	}
	if err != nil {
		return nil //nolint:nilerr // cannot tell now: the produce path retries and bounds it
	}
	if r.ReplyPartition >= int32(len(parts)) {
		return fmt.Errorf("%w: partition %d out of range, topic %q has %d", errReplyTarget, r.ReplyPartition, topic, len(parts))
	}
	return nil
}

// missingTopicTTL is how long a reply topic found missing is refused
// without asking the broker again.
const missingTopicTTL = 10 * time.Second

func (p *Portal) allowedReplyTopics() string {
	t := p.cfg.Topics
	names := append([]string{t.Replies}, t.AllowedReplyTopics...)
	for _, pre := range t.AllowedReplyTopicPrefixes {
		names = append(names, pre+"*")
	}
	return strings.Join(names, ", ")
}

// refuseReplyTarget answers a job whose reply target is refused: on the
// pipeline's replies topic when the topic is not allowed, to the
// dead-letter topic when Kafka cannot take it. No upstream call is made.
func (p *Portal) refuseReplyTarget(f *flight, route wire.Routing, err error) {
	p.releaseBytes(f)
	// No call is made: the slot is not needed while the refusal is produced
	// (the offsets stay pending until it is acknowledged).
	p.mu.Lock()
	slot := f.slot
	f.slot = false
	p.mu.Unlock()
	if slot {
		p.slots.Release(1)
	}
	if errors.Is(err, errReplyTopicRefused) {
		p.log.Info("Job names a reply topic the pipeline does not allow", "job", f.id, "error", err.Error())
		p.respond(f, errorResponse(f.id, wire.ErrorRejected, err), defaultRoute)
		return
	}
	p.log.Info("Job cannot be answered where it asks; dead-lettered", "job", f.id, "error", err.Error())
	msg := &sarama.ProducerMessage{Key: sarama.StringEncoder(f.id)}
	if m, merr := wire.ResponseMessages(p.cfg.Topics.Replies, wire.NoPartition, errorResponse(f.id, wire.ErrorRejected, err), p.cfg.Kafka.MaxMessageBytes); merr == nil && len(m) == 1 {
		msg = m[0]
	}
	f.outcome = wire.ErrorRejected
	p.deadLetterAnswer(f, msg, route, err)
}

// toAnswer moves a flight from its slot to the answer budget (size bytes
// of answer records, at least minAnswerWeight each), so that the slot takes
// the next job while Kafka acknowledges this answer. It waits while the
// budget is spent (Kafka is slow or down): the slot stays held then, which
// stops consumption. A closing portal keeps the slot; the answer is not
// sent then anyway.
func (p *Portal) toAnswer(f *flight, size int64) {
	w := min(max(size, minAnswerWeight), p.answerBudget)
	p.mu.Lock()
	if !f.slot || f.released {
		p.mu.Unlock()
		return
	}
	if !p.answers.TryAcquire(w) {
		// Wait without the lock; the flight may be released meanwhile.
		p.mu.Unlock()
		if p.answers.Acquire(p.closing, w) != nil {
			return
		}
		p.mu.Lock()
		if !f.slot || f.released {
			p.mu.Unlock()
			p.answers.Release(w)
			return
		}
	}
	f.slot, f.answer = false, w
	p.mu.Unlock()
	p.slots.Release(1)
	p.metrics.inFlight.Dec()
	p.metrics.answering.Inc()
}

// minAnswerWeight is what an answer costs in the answer budget at least:
// its records' share of sarama's buffers and of the flight.
const minAnswerWeight = 1 << 10

// recordBytes is the size of a record's key, value and headers.
func recordBytes(m *sarama.ProducerMessage) int64 {
	n := 0
	if m.Key != nil {
		n += m.Key.Length()
	}
	if m.Value != nil {
		n += m.Value.Length()
	}
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// respond produces the job's answer; acknowledgements finish the flight.
func (p *Portal) respond(f *flight, resp *wire.Response, route wire.Routing) {
	topic := route.ReplyTopic
	if topic == "" {
		topic = p.cfg.Topics.Replies
	}
	f.outcome = resp.ErrorKind
	msgs, err := wire.ResponseMessages(topic, route.ReplyPartition, resp, p.cfg.Kafka.MaxMessageBytes)
	if err != nil {
		// The upstream's answer cannot be framed (e.g. an invalid header):
		// answer with an error instead, which always can.
		p.log.Error(err, "Encoding response", "job", f.id)
		f.outcome = wire.ErrorInternal
		msgs, err = wire.ResponseMessages(topic, route.ReplyPartition, errorResponse(f.id, wire.ErrorInternal, err), p.cfg.Kafka.MaxMessageBytes)
		if err != nil {
			p.log.Error(err, "Encoding error response; the job stays unanswered until redelivered", "job", f.id)
			p.release(f, false)
			return
		}
	}
	var size int64
	for _, m := range msgs {
		size += recordBytes(m)
	}
	p.toAnswer(f, size)
	f.sent = time.Now()
	f.pending.Store(int32(len(msgs)))
	for _, m := range msgs {
		m.Metadata = f
		if !p.send(m) {
			return
		}
	}
}

// send hands a message to the producer unless the portal is closing.
func (p *Portal) send(m *sarama.ProducerMessage) bool {
	p.sendMu.RLock()
	defer p.sendMu.RUnlock()
	if p.sendClosed {
		return false
	}
	prod := p.producer
	if _, answer := m.Metadata.(*flight); !answer {
		prod = p.side
	}
	select {
	case prod.Input() <- m:
		return true
	case <-p.closing.Done():
		return false
	}
}

// closeProducer stops every sender, then flushes and closes the producer.
func (p *Portal) closeProducer() {
	p.stopSending()
	p.jobs.Wait()
	p.sendMu.Lock()
	p.sendClosed = true
	p.sendMu.Unlock()
	p.producer.AsyncClose()
	p.side.AsyncClose()
	p.wg.Wait()
}

// successes finishes flights and dead letters as Kafka acknowledges them.
func (p *Portal) successes(prod sarama.AsyncProducer) {
	defer p.wg.Done()
	for m := range prod.Successes() {
		switch md := m.Metadata.(type) {
		case *flight:
			if md.pending.Add(-1) == 0 {
				p.metrics.answerAck.Observe(time.Since(md.sent).Seconds())
				p.finish(md)
			}
		case deadLettered:
			if md.f != nil {
				p.finish(md.f)
			} else if md.part != nil {
				md.part.doneAll([]position{md.pos})
			}
		}
	}
}

// deadLettered is the metadata of a dead-letter record: the record it
// stands for is done once it is acknowledged.
type deadLettered struct {
	part  *partition
	pos   position
	f     *flight
	tries int
}

// producerErrors retries failed messages with backoff, a bounded number of
// times; the job's offsets stay uncommitted meanwhile, so nothing is lost
// if the process dies. An answer that cannot be delivered goes to the
// dead-letter topic with the answer attached, and its offsets are released.
func (p *Portal) producerErrors(prod sarama.AsyncProducer) {
	defer p.wg.Done()
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 15 * time.Second}
	for pe := range prod.Errors() {
		p.metrics.produceErrors.Inc()
		m := &sarama.ProducerMessage{
			Topic: pe.Msg.Topic, Partition: pe.Msg.Partition, Key: pe.Msg.Key, Value: pe.Msg.Value,
			Headers: pe.Msg.Headers, Metadata: pe.Msg.Metadata,
		}
		switch md := pe.Msg.Metadata.(type) {
		case *flight:
			n := md.attempts.Add(1)
			if permanent(pe.Err) || n >= maxProduceAttempts {
				p.log.Error(pe.Err, "Answer cannot be delivered; dead-lettered", "job", md.id, "topic", m.Topic, "partition", m.Partition, "attempts", n)
				p.jobs.Add(1)
				go func() {
					defer p.jobs.Done()
					p.mu.Lock()
					route := md.route
					p.mu.Unlock()
					p.deadLetterAnswer(md, m, route, pe.Err)
				}()
				continue
			}
		case *controlAck:
			if md.tries++; md.tries >= maxProduceAttempts {
				p.log.Error(pe.Err, "Handover record not delivered; dropped (its jobs may run twice)", "topic", m.Topic, "partition", m.Partition)
				continue
			}
		case deadLettered:
			if md.tries++; md.tries >= maxDeadLetterTries {
				p.log.Error(pe.Err, "Dead-letter topic refused the record; dropped", "topic", m.Topic)
				if md.f != nil {
					p.finish(md.f)
				} else if md.part != nil {
					md.part.doneAll([]position{md.pos})
				}
				continue
			}
			m.Metadata = md
		}
		p.log.Error(pe.Err, "Producing failed; retrying", "topic", m.Topic)
		d := backoff.Step()
		p.jobs.Add(1)
		go func() {
			defer p.jobs.Done()
			select {
			case <-time.After(d):
				p.send(m)
			case <-p.closing.Done():
			}
		}()
	}
}

// permanent reports errors no retry can mend for this record.
func permanent(err error) bool {
	return errors.Is(err, sarama.ErrInvalidPartition) || errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		errors.Is(err, sarama.ErrInvalidMessageSize) || errors.Is(err, sarama.ErrTopicAuthorizationFailed) ||
		errors.Is(err, sarama.ErrInvalidTopic) || errors.Is(err, sarama.ErrUnknownTopicOrPartition)
}

// deadLetterAnswer sends a job's undeliverable answer (msg) to the
// dead-letter topic; the job's offsets are released once that is
// acknowledged, or at once when there is no dead-letter topic.
func (p *Portal) deadLetterAnswer(f *flight, msg *sarama.ProducerMessage, route wire.Routing, cause error) {
	p.metrics.deadLetters.WithLabelValues("undeliverable").Inc()
	if p.cfg.Topics.DeadLetter == "" {
		p.finish(f)
		return
	}
	headers := make([]sarama.RecordHeader, 0, len(msg.Headers)+4)
	headers = append(headers, msg.Headers...)
	p.mu.Lock()
	positions := append([]position(nil), f.positions...)
	p.mu.Unlock()
	offs := make([]string, 0, len(positions))
	for _, pos := range positions {
		offs = append(offs, strconv.FormatInt(pos.Offset, 10))
	}
	topic := route.ReplyTopic
	if topic == "" {
		topic = p.cfg.Topics.Replies
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderDLQReason), Value: []byte("answer undeliverable to " + topic + "/" + strconv.Itoa(int(route.ReplyPartition)) + ": " + cause.Error())},
		sarama.RecordHeader{Key: []byte(HeaderDLQTopic), Value: []byte(p.cfg.Topics.Requests)},
		sarama.RecordHeader{Key: []byte(HeaderDLQPartition), Value: []byte(strconv.Itoa(int(f.part.id)))},
		sarama.RecordHeader{Key: []byte(HeaderDLQOffset), Value: []byte(strings.Join(offs, ","))},
	)
	f.pending.Store(1)
	p.send(&sarama.ProducerMessage{
		Topic: p.cfg.Topics.DeadLetter, Partition: wire.NoPartition, Key: msg.Key, Value: msg.Value,
		Headers: headers, Metadata: deadLettered{f: f},
	})
}

// finish marks a job's offsets done once its answer is acknowledged.
func (p *Portal) finish(f *flight) {
	p.mu.Lock()
	if f.finished {
		p.mu.Unlock()
		return
	}
	f.finished = true
	abandoned := f.abandoned
	if p.inflight[f.id] == f {
		delete(p.inflight, f.id)
	}
	p.mu.Unlock()
	p.metrics.jobsCompleted.WithLabelValues(outcome(f.outcome)).Inc()
	p.metrics.jobDuration.Observe(time.Since(f.started).Seconds())
	p.release(f, !abandoned)
}

// abandon gives up a job without an answer: it is cancelled, and its
// offsets are not marked done (its next owner runs it).
func (p *Portal) abandon(f *flight) {
	p.mu.Lock()
	f.abandoned = true
	cancel := f.cancel
	p.mu.Unlock()
	p.metrics.revokeCancelled.Inc()
	if cancel != nil {
		cancel()
	}
}

// release frees a flight's slot and bytes, once, and tells its partition
// whether the job was answered.
func (p *Portal) release(f *flight, answered bool) {
	p.mu.Lock()
	f.finished = true
	if p.inflight[f.id] == f {
		delete(p.inflight, f.id)
	}
	first := !f.released
	f.released = true
	slot, answer, bytes := f.slot, f.answer, f.bytes
	f.slot, f.answer, f.bytes = false, 0, 0
	p.mu.Unlock()
	if !first {
		return
	}
	if f.cancel != nil {
		f.cancel()
	}
	if bytes > 0 {
		if err := p.asm.Release(bytes); err != nil {
			p.log.Error(err, "Releasing assembly bytes", "job", f.id)
		}
	}
	f.part.complete(f, answered)
	if slot {
		p.slots.Release(1)
	}
	if answer > 0 {
		p.answers.Release(answer)
		p.metrics.answering.Dec()
	} else {
		p.metrics.inFlight.Dec()
	}
	close(f.done)
}

// deadLetter sends a record that cannot be tied to a job to the
// dead-letter topic, or counts and skips it when none is configured.
func (p *Portal) deadLetter(pt *partition, m *sarama.ConsumerMessage, cause error) {
	reason := string(wire.KindOf(cause))
	if reason == "" {
		reason = string(wire.ErrorMalformed)
	}
	p.metrics.deadLetters.WithLabelValues(reason).Inc()
	pos := position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	p.log.Info("Message cannot be tied to a job", "partition", m.Partition, "offset", m.Offset, "reason", cause.Error(),
		"deadLetterTopic", p.cfg.Topics.DeadLetter)
	if p.cfg.Topics.DeadLetter == "" {
		pt.doneAll([]position{pos})
		return
	}
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+4)
	for _, h := range m.Headers {
		if h != nil {
			headers = append(headers, *h)
		}
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderDLQReason), Value: []byte(cause.Error())},
		sarama.RecordHeader{Key: []byte(HeaderDLQTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderDLQPartition), Value: []byte(strconv.Itoa(int(m.Partition)))},
		sarama.RecordHeader{Key: []byte(HeaderDLQOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	msg := &sarama.ProducerMessage{Topic: p.cfg.Topics.DeadLetter, Partition: wire.NoPartition, Headers: headers, Metadata: deadLettered{part: pt, pos: pos}}
	if m.Key != nil {
		msg.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		msg.Value = sarama.ByteEncoder(m.Value)
	}
	p.send(msg)
}
