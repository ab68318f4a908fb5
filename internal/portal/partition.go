package portal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/portal/assembler"
	"kafkasend.io/kafkasend/internal/portal/offsets"
	"kafkasend.io/kafkasend/pkg/wire"
)

// position is where a chunk was read from.
type position = assembler.Position

// partition is one claimed partition, from its assignment to its release.
// One goroutine (ConsumeClaim's) reads and handles its messages; the
// response path and the commit loop reach it through its methods.
type partition struct {
	p     *Portal
	sess  sarama.ConsumerGroupSession
	topic string
	id    int32
	label string // partition number, for metric labels

	// ctx ends when the partition is released (its Messages channel closed)
	// or the session ends; every wait of the consume path uses it.
	ctx    context.Context
	cancel context.CancelFunc

	// queue: the pump moves records from sarama here, so that a release is
	// seen even while handling waits for room; sarama is paused while the
	// queue is long, which bounds it.
	qmu    sync.Mutex
	queue  []*sarama.ConsumerMessage
	qbytes int
	qwake  chan struct{}
	paused bool

	mu       sync.Mutex
	released bool
	tracker  offsets.Tracker
	start    int64 // the commit point the partition was claimed at
	lastRead int64 // offset of the last record handled, start-1 before
	// inherited done ranges above lastRead, from the commit metadata.
	inheritedDone []offsets.Range
	// leases are offsets of jobs running on another worker (or on this one,
	// from an earlier claim), by offset.
	leases map[int64]*lease
	// parked are leased jobs read whole, waiting for their holder's answer
	// or for the lease to lapse, by the offset of their first chunk.
	parked map[int64]*parkedJob
	// flights are jobs of this partition executing or being answered here.
	flights map[*flight]struct{}
	// lapsed are jobs run here after their lease lapsed, by offset.
	lapsed map[int64]*flight
	marked mark
}

// lease is one holder's claim on some offsets, shared by them.
type lease struct {
	holder  string
	expires time.Time
}

// parkedJob is a leased job whose chunks were all read here.
type parkedJob struct {
	res   assembler.Result
	lease *lease
}

type mark struct {
	next int64
	md   string
}

// Queue bounds: sarama is paused for the partition at highWater records or
// highWaterBytes, and resumed at lowWater and lowWaterBytes. Records
// already fetched still arrive after a pause (at most a fetch response and
// sarama's channel buffer).
const (
	highWater      = 64
	lowWater       = 16
	highWaterBytes = 4 << 20
	lowWaterBytes  = 1 << 20
)

// leaseGrace is added to a lease before the next owner gives up on it, for
// clock differences between workers.
const leaseGrace = 2 * time.Second

func (p *Portal) newPartition(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) *partition {
	ctx, cancel := context.WithCancel(s.Context())
	pt := &partition{
		p: p, sess: s, topic: claim.Topic(), id: claim.Partition(), label: strconv.Itoa(int(claim.Partition())),
		ctx: ctx, cancel: cancel, qwake: make(chan struct{}, 1),
		start: claim.InitialOffset(), leases: map[int64]*lease{}, parked: map[int64]*parkedJob{},
		flights: map[*flight]struct{}{}, lapsed: map[int64]*flight{},
	}
	pt.lastRead = pt.start - 1
	pt.inherit()
	return pt
}

// inherit reads what the partition's previous owners committed: answered
// offsets above the commit point and leased jobs. A failure to read only
// means that answered jobs may run again; leased ones too, once.
func (pt *partition) inherit() {
	p := pt.p
	resp, err := p.admin.ListConsumerGroupOffsets(p.cfg.Kafka.ConsumerGroup, map[string][]int32{pt.topic: {pt.id}})
	if err != nil {
		p.log.Info("Cannot read the committed offset; answered and handed-over jobs above it may run again", "partition", pt.id, "error", err.Error())
		return
	}
	b := resp.GetBlock(pt.topic, pt.id)
	if b == nil || !errors.Is(b.Err, sarama.ErrNoError) || b.Offset < 0 {
		return
	}
	c, err := offsets.DecodeCommit(b.Offset, b.Metadata)
	if err != nil {
		p.log.Info("Ignoring commit metadata", "partition", pt.id, "error", err.Error())
		return
	}
	if b.Offset != pt.start && pt.start >= 0 {
		p.log.Info("Committed offset moved while claiming", "partition", pt.id, "committed", b.Offset, "claimed", pt.start)
	}
	pt.adopt(c)
	if !c.Empty() {
		p.log.Info("Claimed partition with jobs answered or running elsewhere", "partition", pt.id, "commit", b.Offset,
			"answered", c.DoneCount(), "leased", c.LeasedCount())
	}
}

// adopt takes over what an earlier owner committed.
func (pt *partition) adopt(c offsets.Commit) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.inheritedDone = c.Done
	for _, l := range c.Leases {
		ls := &lease{holder: l.Holder, expires: l.Expires}
		for _, r := range l.Offsets {
			for o := r.First; o <= r.Last && len(pt.leases) < maxLeasedOffsets; o++ {
				pt.leases[o] = ls
			}
		}
	}
}

// maxLeasedOffsets bounds the leased offsets a partition keeps.
const maxLeasedOffsets = 1 << 16

// pump moves records from the claim to the queue until the claim's
// channel closes (the partition was released), then ends the partition's
// context.
func (pt *partition) pump(claim sarama.ConsumerGroupClaim) {
	defer pt.cancel()
	// sarama keeps a partition's pause across reassignment: start afresh.
	pt.p.group.Resume(map[string][]int32{pt.topic: {pt.id}})
	for m := range claim.Messages() {
		pt.qmu.Lock()
		pt.queue = append(pt.queue, m)
		pt.qbytes += len(m.Value)
		if !pt.paused && (len(pt.queue) >= highWater || pt.qbytes >= highWaterBytes) {
			pt.paused = true
			pt.p.group.Pause(map[string][]int32{pt.topic: {pt.id}})
		}
		pt.qmu.Unlock()
		select {
		case pt.qwake <- struct{}{}:
		default:
		}
	}
	pt.qmu.Lock()
	if pt.paused {
		pt.paused = false
		pt.p.group.Resume(map[string][]int32{pt.topic: {pt.id}})
	}
	pt.qmu.Unlock()
}

// next returns the next queued record, or nil on tick or when ctx ends.
func (pt *partition) next(tick <-chan time.Time) (*sarama.ConsumerMessage, bool) {
	for {
		pt.qmu.Lock()
		if len(pt.queue) > 0 {
			m := pt.queue[0]
			pt.queue[0] = nil
			pt.queue = pt.queue[1:]
			pt.qbytes -= len(m.Value)
			if pt.paused && len(pt.queue) <= lowWater && pt.qbytes <= lowWaterBytes {
				pt.paused = false
				pt.p.group.Resume(map[string][]int32{pt.topic: {pt.id}})
			}
			pt.qmu.Unlock()
			return m, true
		}
		pt.qmu.Unlock()
		select {
		case <-pt.ctx.Done():
			return nil, false
		case <-tick:
			return nil, true
		case <-pt.qwake:
		}
	}
}

func (pt *partition) queued() int {
	pt.qmu.Lock()
	defer pt.qmu.Unlock()
	return len(pt.queue)
}

// session is the consumer group session the partition was claimed in.
func (pt *partition) session() sarama.ConsumerGroupSession { return pt.sess }

// run handles the partition's records until it is released.
func (pt *partition) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		m, ok := pt.next(tick.C)
		if !ok {
			return
		}
		if m == nil {
			pt.checkLeases()
			continue
		}
		if err := pt.handle(m); err != nil {
			// Only a release ends handling early; the record is read
			// again by the partition's next owner.
			return
		}
	}
}

// handle takes one record. It returns an error only when the partition was
// released while waiting for room.
func (pt *partition) handle(m *sarama.ConsumerMessage) error {
	p := pt.p
	pt.mu.Lock()
	if err := pt.tracker.Track(m.Offset); err != nil {
		// Read before in this claim: it is tracked already.
		pt.mu.Unlock()
		p.log.Error(err, "Record read twice; skipped", "partition", pt.id, "offset", m.Offset)
		return nil
	}
	pt.lastRead = m.Offset
	if pt.inheritedAnswered(m.Offset) {
		pt.tracker.Done(m.Offset)
		pt.mu.Unlock()
		p.metrics.skippedAnswered.Inc()
		return nil
	}
	leased := pt.leases[m.Offset]
	pt.mu.Unlock()

	if isControl(m) {
		pt.control(m)
		return nil
	}
	if !m.Timestamp.IsZero() {
		p.metrics.recordDelay.Observe(max(time.Since(m.Timestamp), 0).Seconds())
	}
	pos := position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	c, err := wire.ParseChunk(m.Key, m.Headers, m.Value)
	if err == nil && c.Type != wire.TypeRequest {
		err = fmt.Errorf("a %s chunk on the requests topic", c.Type)
	}
	if err != nil {
		var ce *wire.ChunkError
		if errors.As(err, &ce) && ce.Type == wire.TypeRequest && leased == nil {
			// A bad chunk of a job we can name: answer it where its
			// requester listens rather than leave it waiting.
			route := defaultRoute
			if ce.RoutingKnown {
				route = ce.Routing
			}
			p.metrics.jobsReceived.Inc()
			slot := p.slots.TryAcquire(1)
			f := p.startFlight(pt, assembler.Result{JobID: ce.JobID, Positions: []position{pos}}, 0, "")
			f.slot = slot
			p.answerError(f, ce.Kind(), ce, route)
			return nil
		}
		p.deadLetter(pt, m, err)
		return nil
	}
	if leased != nil {
		return pt.park(c, pos, leased)
	}
	return p.handleChunk(pt, c, pos)
}

// inheritedAnswered reports whether o was committed as answered by an
// earlier owner, dropping inherited ranges below o. Called with pt.mu held,
// with increasing offsets.
func (pt *partition) inheritedAnswered(o int64) bool {
	for len(pt.inheritedDone) > 0 && pt.inheritedDone[0].Last < o {
		pt.inheritedDone = pt.inheritedDone[1:]
	}
	return len(pt.inheritedDone) > 0 && pt.inheritedDone[0].Contains(o)
}

// park assembles a leased job without executing it.
func (pt *partition) park(c wire.Chunk, pos position, l *lease) error {
	p := pt.p
	p.metrics.skippedLeased.Inc()
	res, err := p.asm.Add(pt.ctx, c, pos)
	if err != nil {
		return err
	}
	switch res.Outcome {
	case assembler.Complete:
		pt.mu.Lock()
		pt.parked[res.Positions[0].Offset] = &parkedJob{res: res, lease: l}
		pt.mu.Unlock()
	case assembler.Duplicate:
		p.duplicate(pt, res, pos)
	case assembler.Rejected:
		// Its holder had it whole; a damaged copy cannot be run here either.
		// Its answer comes from the holder, or from here once the lease lapses.
		pt.mu.Lock()
		pt.parked[res.Positions[0].Offset] = &parkedJob{res: res, lease: l}
		pt.mu.Unlock()
	}
	return nil
}

// control applies a handover record from a worker running jobs of this
// partition.
func (pt *partition) control(m *sarama.ConsumerMessage) {
	p := pt.p
	c, ranges, err := parseControl(m, p.handoverKey)
	pt.mu.Lock()
	pt.tracker.Done(m.Offset)
	if err != nil {
		pt.mu.Unlock()
		p.metrics.handoverIgnored.Inc()
		p.log.Info("Ignoring a handover record", "partition", pt.id, "offset", m.Offset, "error", err.Error())
		return
	}
	var cancel []*flight
	var release []*parkedJob
	for _, r := range ranges {
		for o := r.First; o <= r.Last; o++ {
			l := pt.leases[o]
			known := l != nil && l.holder == c.Holder
			switch c.Op {
			case opRenew:
				if known {
					l.expires = time.UnixMilli(c.Expires)
				}
			case opDone:
				if known {
					delete(pt.leases, o)
				}
				if j := pt.parked[o]; j != nil && j.lease.holder == c.Holder {
					delete(pt.parked, o)
					release = append(release, j)
				}
				// A job run here after its lease lapsed, which its holder
				// answered after all: stop it, it needs no second answer.
				if f := pt.lapsed[o]; f != nil && f.leasedFrom == c.Holder {
					delete(pt.lapsed, o)
					cancel = append(cancel, f)
					known = true
				}
				if known {
					pt.tracker.Done(o)
				}
			}
		}
	}
	pt.mu.Unlock()
	for _, j := range release {
		pt.doneAll(j.res.Positions)
		if n := int64(len(j.res.Payload)); n > 0 {
			if err := p.asm.Release(n); err != nil {
				p.log.Error(err, "Releasing assembly bytes", "job", j.res.JobID)
			}
		}
	}
	for _, f := range cancel {
		p.abandon(f)
		p.log.Info("Stopped a job run after its lease lapsed: its first worker answered it", "job", f.id, "holder", c.Holder)
	}
}

// checkLeases runs parked jobs whose lease lapsed, once this owner has read
// the partition to its end (so that no renewal is still unread).
func (pt *partition) checkLeases() {
	p := pt.p
	now := time.Now()
	var due []*parkedJob
	pt.mu.Lock()
	for _, j := range pt.parked {
		if now.After(j.lease.expires.Add(leaseGrace)) {
			due = append(due, j)
		}
	}
	pt.mu.Unlock()
	if len(due) == 0 || pt.queued() > 0 {
		return
	}
	newest, err := p.newestOffset(pt.topic, pt.id)
	pt.mu.Lock()
	caughtUp := err == nil && newest <= pt.lastRead+1
	pt.mu.Unlock()
	if !caughtUp {
		return
	}
	for _, j := range due {
		if !p.slots.TryAcquire(1) {
			return // no room now; next tick
		}
		pt.mu.Lock()
		first := j.res.Positions[0].Offset
		if pt.parked[first] != j {
			pt.mu.Unlock()
			p.slots.Release(1)
			continue
		}
		delete(pt.parked, first)
		for _, pos := range j.res.Positions {
			delete(pt.leases, pos.Offset)
		}
		pt.mu.Unlock()
		p.metrics.reexecuted.Inc()
		p.log.Info("Running a handed-over job: its lease lapsed", "job", j.res.JobID, "holder", j.lease.holder,
			"expired", j.lease.expires.Format(time.RFC3339Nano))
		if f := p.runLapsed(pt, j.res, j.lease.holder); f != nil {
			pt.mu.Lock()
			for _, pos := range j.res.Positions {
				pt.lapsed[pos.Offset] = f
			}
			pt.mu.Unlock()
		}
	}
}

// doneAll marks the offsets of a job done in this partition.
func (pt *partition) doneAll(positions []position) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, pos := range positions {
		if pos.Partition == pt.id && pos.Topic == pt.topic {
			pt.tracker.Done(pos.Offset)
		}
	}
}

// addFlight registers a job executing for this partition; it reports false
// when the partition was released meanwhile (the job is then handed over).
func (pt *partition) addFlight(f *flight) bool {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.released {
		return false
	}
	pt.flights[f] = struct{}{}
	return true
}

// complete marks an answered (or abandoned) job's offsets done here, or,
// once the partition was released, tells its next owner.
func (pt *partition) complete(f *flight, answered bool) {
	pt.mu.Lock()
	if !pt.released {
		delete(pt.flights, f)
		if f.leasedFrom != "" {
			for o, lf := range pt.lapsed {
				if lf == f {
					delete(pt.lapsed, o)
				}
			}
		}
		if answered {
			for _, pos := range f.positions {
				if pos.Partition == pt.id {
					pt.tracker.Done(pos.Offset)
				}
			}
		}
		pt.mu.Unlock()
		return
	}
	pt.mu.Unlock()
	pt.p.handed.complete(f, answered, pt.topic, pt.id)
}

// commitState is the offset and metadata to commit now. extra are leases
// to record besides those known here.
func (pt *partition) commitState(extra ...offsets.Lease) (mark, bool) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	next, ok := pt.tracker.Committable()
	if !ok {
		if pt.start < 0 {
			return mark{}, false
		}
		next = pt.start
	}
	c := offsets.Commit{Done: pt.tracker.DoneRanges(4096)}
	for _, r := range pt.inheritedDone {
		if r.Last <= pt.lastRead {
			continue
		}
		r.First = max(r.First, pt.lastRead+1)
		if r.First == next {
			// Answered and not read yet: the commit point may pass it.
			next = r.Last + 1
			continue
		}
		c.Done = append(c.Done, r)
	}
	byHolder := map[*lease][]int64{}
	var order []*lease
	for o, l := range pt.leases {
		if o < next {
			continue
		}
		if _, seen := byHolder[l]; !seen {
			order = append(order, l)
		}
		byHolder[l] = append(byHolder[l], o)
	}
	for _, l := range order {
		offs := byHolder[l]
		slices.Sort(offs)
		c.Leases = append(c.Leases, offsets.Lease{Holder: l.holder, Expires: l.expires, Offsets: offsets.Ranges(offs)})
	}
	c.Leases = append(c.Leases, extra...)
	md, dropped := offsets.EncodeCommit(next, c)
	if dropped > 0 {
		pt.p.metrics.metadataDropped.Add(float64(dropped))
	}
	return mark{next, md}, true
}

// markCommit hands the commit state to sarama when it changed.
func (pt *partition) markCommit(s sarama.ConsumerGroupSession, extra ...offsets.Lease) {
	m, ok := pt.commitState(extra...)
	if !ok {
		return
	}
	pt.mu.Lock()
	changed := m != pt.marked
	pt.marked = m
	pending := pt.tracker.Pending()
	pt.mu.Unlock()
	if changed || len(extra) > 0 {
		// MarkOffset moves the commit point forward; ResetOffset at the same
		// offset replaces the metadata (what is answered or leased above it
		// changes while the point stays).
		s.MarkOffset(pt.topic, pt.id, m.next, m.md)
		s.ResetOffset(pt.topic, pt.id, m.next, m.md)
	}
	pt.p.metrics.uncommitted.WithLabelValues(pt.topic, pt.label).Set(float64(pending))
}

// release ends the claim: jobs still running here are handed over with a
// lease, the final commit records them, and partial jobs are dropped (the
// next owner reads their chunks again).
func (pt *partition) release(s sarama.ConsumerGroupSession) {
	p := pt.p
	pt.mu.Lock()
	pt.released = true
	flights := make([]*flight, 0, len(pt.flights))
	for f := range pt.flights {
		flights = append(flights, f)
	}
	pt.flights = nil
	parked := pt.parked
	pt.parked = nil
	pt.mu.Unlock()

	var extra []offsets.Lease
	if len(flights) > 0 {
		extra = append(extra, p.handed.add(flights, time.Now()))
		p.log.Info("Partition released; its running jobs stay here and are answered here", "partition", pt.id, "jobs", len(flights))
	}
	pt.markCommit(s, extra...)
	for _, j := range parked {
		if n := int64(len(j.res.Payload)); n > 0 {
			if err := p.asm.Release(n); err != nil {
				p.log.Error(err, "Releasing assembly bytes", "job", j.res.JobID)
			}
		}
		p.asm.Forget(j.res.JobID)
	}
	p.asm.DropPartition(pt.topic, pt.id)
	p.metrics.uncommitted.DeleteLabelValues(pt.topic, pt.label)
}
