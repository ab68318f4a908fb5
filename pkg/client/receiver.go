package client

import (
	"bytes"
	"errors"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

// Grace periods of the receiver's bookkeeping.
const (
	// waiterGrace is how long after its job deadline a waiter that got no
	// answer is kept (the portal answers timeout at the deadline).
	waiterGrace = time.Minute
	// partialTTL is how long a partial response may wait for its other
	// chunks (they are produced together, so this only catches leftovers).
	partialTTL = 5 * time.Minute
)

// errClosed is the cause of the error returned to callers waiting while the
// client closes.
var errClosed = errors.New("client closed")

// receiver reassembles response chunks and hands complete responses to the
// waiter of their job ID.
type receiver struct {
	maxHeld, maxResponse int64

	mu      sync.Mutex
	partial map[string]*partial
	waiters map[string]*waiter
	held    int64 // bytes of partial chunks and unclaimed responses
	st      Stats
}

// partial is a multi-chunk response being assembled.
type partial struct {
	first  wire.Chunk // Count, Size and Checksum every chunk must agree on
	chunks map[int]wire.Chunk
	bytes  int64
	seen   time.Time
}

// waiter is one job this client expects an answer to.
type waiter struct {
	id       string
	deadline time.Time // zero: none
	done     chan struct{}
	// Set before done is closed.
	resp   *wire.Response
	err    error
	size   int64
	doneAt time.Time
	// scanned is true once the reply partition before the live stream was
	// searched for this job (Await of a job from another instance).
	scanned bool
	// local is true for jobs this instance submitted.
	local bool
}

func newReceiver(maxHeld, maxResponse int64) *receiver {
	return &receiver{
		maxHeld: maxHeld, maxResponse: maxResponse,
		partial: map[string]*partial{}, waiters: map[string]*waiter{},
	}
}

func (w *waiter) isDone() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// register returns the waiter of id, creating it when there is none; created
// reports whether it is new.
func (r *receiver) register(id string, deadline time.Time, local bool) (w *waiter, created bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w = r.waiters[id]; w != nil {
		return w, false
	}
	w = &waiter{id: id, deadline: deadline, done: make(chan struct{}), local: local}
	r.waiters[id] = w
	return w, true
}

// lookup returns the waiter of id, or nil.
func (r *receiver) lookup(id string) *waiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waiters[id]
}

// claim removes a finished waiter and returns its outcome.
func (r *receiver) claim(w *waiter) (*wire.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiters[w.id] == w {
		delete(r.waiters, w.id)
		r.held -= w.size
	}
	return w.resp, w.err
}

// abandon forgets id: a later answer is counted as unmatched.
func (r *receiver) abandon(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.waiters[id]; w != nil {
		delete(r.waiters, id)
		r.held -= w.size
	}
	if p := r.partial[id]; p != nil {
		delete(r.partial, id)
		r.held -= p.bytes
	}
}

func (r *receiver) markScanned(w *waiter) {
	r.mu.Lock()
	w.scanned = true
	r.mu.Unlock()
}

func (r *receiver) isScanned(w *waiter) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return w.scanned
}

func (r *receiver) stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func (r *receiver) countSent() {
	r.mu.Lock()
	r.st.Sent++
	r.mu.Unlock()
}

// ingest takes one record of the reply partition.
func (r *receiver) ingest(m *sarama.ConsumerMessage) {
	c, err := wire.ParseChunk(m.Key, m.Headers, m.Value)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || c.Type != wire.TypeResponse {
		r.st.Malformed++
		return
	}
	w := r.waiters[c.JobID]
	if w == nil || w.isDone() {
		// Not ours (any more), or a repeated answer: drop it, counting each
		// response once, at its last chunk.
		if c.IsLast() {
			r.st.Unmatched++
		}
		return
	}
	if int64(c.Size) > r.maxResponse {
		r.dropPartial(c.JobID)
		r.st.Evicted++
		r.finish(w, nil, localError(wire.ErrorTooLarge, w.id, nil,
			"response of %d bytes is over this client's limit of %d bytes", c.Size, r.maxResponse), 0)
		return
	}
	var payload []byte
	if c.Count == 1 {
		payload = bytes.Clone(c.Data)
		if payload == nil {
			payload = []byte{}
		}
		if err := wire.VerifyChecksum(payload, c.Checksum); err != nil {
			r.st.Malformed++
			return
		}
	} else if payload = r.addChunk(c); payload == nil {
		r.enforceLimit(nil)
		return
	}
	resp, err := wire.DecodeResponse(payload)
	if err != nil {
		r.st.Malformed++
		r.finish(w, nil, localError(wire.ErrorMalformed, w.id, err, "undecodable response: %v", err), 0)
		return
	}
	resp.ID = c.JobID
	r.st.Delivered++
	r.finish(w, resp, nil, int64(len(payload)))
	r.enforceLimit(w)
}

// addChunk adds one chunk of a multi-chunk response and returns the joined
// payload once every chunk is there. Called with r.mu held.
func (r *receiver) addChunk(c wire.Chunk) []byte {
	p := r.partial[c.JobID]
	if p != nil && (p.first.Count != c.Count || p.first.Size != c.Size || p.first.Checksum != c.Checksum) {
		// Another copy of the answer (a re-execution) with other bytes:
		// start over with the newer one.
		r.dropPartial(c.JobID)
		p = nil
	}
	if p == nil {
		p = &partial{first: c, chunks: make(map[int]wire.Chunk, c.Count), seen: time.Now()}
		r.partial[c.JobID] = p
	}
	if _, dup := p.chunks[c.Index]; dup {
		return nil
	}
	c.Data = bytes.Clone(c.Data)
	p.chunks[c.Index] = c
	p.bytes += int64(len(c.Data))
	r.held += int64(len(c.Data))
	if len(p.chunks) < c.Count {
		return nil
	}
	r.dropPartial(c.JobID)
	ordered := make([]wire.Chunk, c.Count)
	for i := range ordered {
		ordered[i] = p.chunks[i]
	}
	payload, err := wire.Join(ordered)
	if err != nil {
		r.st.Malformed++
		return nil
	}
	return payload
}

func (r *receiver) dropPartial(id string) {
	if p := r.partial[id]; p != nil {
		delete(r.partial, id)
		r.held -= p.bytes
	}
}

// finish completes w. Called with r.mu held.
func (r *receiver) finish(w *waiter, resp *wire.Response, err error, size int64) {
	w.resp, w.err, w.size, w.doneAt = resp, err, size, time.Now()
	r.held += size
	close(w.done)
}

// enforceLimit drops the oldest partial responses and unclaimed answers
// (never keep) until the held bytes fit MaxHeldBytes. Called with r.mu held.
func (r *receiver) enforceLimit(keep *waiter) {
	for r.held > r.maxHeld {
		var oldestP string
		var oldestW *waiter
		var at time.Time
		for id, p := range r.partial {
			if at.IsZero() || p.seen.Before(at) {
				oldestP, at = id, p.seen
			}
		}
		for _, w := range r.waiters {
			if w != keep && w.size > 0 && (at.IsZero() || w.doneAt.Before(at)) {
				oldestW, oldestP, at = w, "", w.doneAt
			}
		}
		switch {
		case oldestW != nil:
			r.held -= oldestW.size
			oldestW.resp, oldestW.size = nil, 0
			oldestW.err = localError(wire.ErrorInternal, oldestW.id, nil,
				"the response arrived but was dropped before it was awaited: the client's memory limit was reached")
		case oldestP != "":
			r.dropPartial(oldestP)
		default:
			return
		}
		r.st.Evicted++
	}
}

// expire forgets waiters long past their deadline and stale partials.
func (r *receiver) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, w := range r.waiters {
		if !w.isDone() && !w.deadline.IsZero() && now.After(w.deadline.Add(waiterGrace)) {
			delete(r.waiters, id)
		}
	}
	for id, p := range r.partial {
		if now.Sub(p.seen) > partialTTL {
			r.dropPartial(id)
			r.st.Evicted++
		}
	}
}

// closeAll fails every waiter still waiting.
func (r *receiver) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.waiters {
		if !w.isDone() {
			r.finish(w, nil, errClosed, 0)
		}
	}
}
