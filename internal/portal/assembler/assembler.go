// Package assembler puts jobs back together from their chunks as the portal
// consumes them: chunks of many jobs interleave, arrive twice, or never all
// arrive. It holds each partial job's payload in one buffer of the declared
// size, reserved from a byte budget when the job's first chunk arrives, and
// tells the caller, chunk by chunk, whether a job is still pending, complete,
// a duplicate or rejected, with the Kafka positions the caller must mark
// done once the job is answered.
package assembler

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"kafkasend.io/kafkasend/pkg/wire"
)

// Position is where a chunk was read from.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Outcome is what Add made of a chunk.
type Outcome uint8

// The outcomes of Add.
const (
	// Pending: the chunk was stored; the job still misses chunks.
	Pending Outcome = iota + 1
	// Complete: the chunk completed its job; Result.Payload is the whole
	// payload, checksum verified.
	Complete
	// Duplicate: the chunk needs no answer of its own, see Result.Finished.
	Duplicate
	// Rejected: the job is over; answer it with Result.Kind and Result.Err.
	Rejected
)

// String names the outcome for logs.
func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Complete:
		return "complete"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	default:
		return fmt.Sprintf("Outcome(%d)", uint8(o))
	}
}

// Result is the answer of Add and Expire.
type Result struct {
	Outcome Outcome
	JobID   string
	Type    wire.MessageType
	// Payload (Complete only) is the assembled payload, len(Payload) bytes of
	// the budget: they stay counted in HeldBytes until the caller calls
	// Release(int64(len(Payload))), so that the budget bounds jobs being
	// executed too. Release at once to bound partial jobs only.
	Payload []byte
	// Positions (Complete and Rejected) are those of every chunk of the job
	// seen so far, this one included, in arrival order: mark them done once
	// the job's response is acknowledged.
	Positions []Position
	// Finished (Duplicate only) is false when the chunk repeats a chunk of a
	// job still being assembled: its position can be marked done at once,
	// the earlier copy holds the job's place. It is true when the job was
	// already completed, rejected or expired here: the chunk must not be
	// answered again, and its position may be marked done only once that
	// job's response is acknowledged (if it still is in flight, attach the
	// position to it).
	Finished bool
	// Kind and Err (Rejected only) say why, for the error response. Err
	// matches wire.ErrMalformed, wire.ErrChecksum, wire.ErrTooLarge,
	// ErrBudget or ErrIncomplete with errors.Is.
	Kind wire.ErrorKind
	Err  error
}

// Errors of rejected jobs not already defined by the wire package.
var (
	// ErrBudget: no room in the byte budget for a new job within RoomWait.
	ErrBudget = errors.New("assembly byte budget exhausted")
	// ErrIncomplete: the job's chunks did not all arrive within the assembly
	// timeout.
	ErrIncomplete = errors.New("incomplete job")
)

// Config of an Assembler.
type Config struct {
	// MaxRequestBytes is the largest payload accepted: a job declaring more
	// is rejected as too large on its first chunk, before any byte is held.
	MaxRequestBytes int64
	// MaxBytes is the byte budget: the payload bytes of partial jobs plus
	// those of completed jobs not yet released. At least MaxRequestBytes.
	MaxBytes int64
	// AssemblyTimeout is how long a job may take from its first chunk to its
	// last before Expire rejects it as incomplete.
	AssemblyTimeout time.Duration
	// RoomWait is how long Add waits for budget room for a new job before
	// rejecting it with ErrBudget. Zero rejects at once. Waiting is the
	// consumer's backpressure; the bound keeps a partition whose partial
	// jobs hold the budget (their remaining chunks queued behind the new
	// job's) from stalling until they expire.
	RoomWait time.Duration
	// RecentJobs is how many finished job IDs are remembered so that their
	// redelivered chunks are recognised as duplicates. Default 100000.
	RecentJobs int
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

const numShards = 32

// Assembler reassembles jobs. It is safe for concurrent use: Add may be
// called from one goroutine per partition while Expire runs on another.
type Assembler struct {
	cfg     Config
	seed    maphash.Seed
	shards  [numShards]shard
	sem     *semaphore.Weighted
	held    atomic.Int64
	partial atomic.Int64
}

type shard struct {
	mu     sync.Mutex
	jobs   map[string]*job
	recent recentSet
}

// job is one partial job.
type job struct {
	typ      wire.MessageType
	count    int
	size     int
	checksum uint32
	// chunkLen is the length of every chunk but the last, 0 until known;
	// lastLen is the last chunk's, -1 until known.
	chunkLen  int
	lastLen   int
	buf       []byte
	have      []uint64
	received  int
	positions []Position
	started   time.Time
}

// New returns an Assembler, or an error naming the bad setting.
func New(cfg Config) (*Assembler, error) {
	var errs []error
	if cfg.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("MaxRequestBytes must be positive"))
	}
	if cfg.MaxBytes < cfg.MaxRequestBytes {
		errs = append(errs, fmt.Errorf("MaxBytes (%d) must be at least MaxRequestBytes (%d)", cfg.MaxBytes, cfg.MaxRequestBytes))
	}
	if cfg.AssemblyTimeout <= 0 {
		errs = append(errs, errors.New("AssemblyTimeout must be positive"))
	}
	if cfg.RoomWait < 0 {
		errs = append(errs, errors.New("RoomWait must not be negative"))
	}
	if cfg.RecentJobs < 0 {
		errs = append(errs, errors.New("RecentJobs must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring assembler: %w", err)
	}
	if cfg.RecentJobs == 0 {
		cfg.RecentJobs = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Assembler{cfg: cfg, seed: maphash.MakeSeed(), sem: semaphore.NewWeighted(cfg.MaxBytes)}
	perShard := max(1, (cfg.RecentJobs+numShards-1)/numShards)
	for i := range a.shards {
		a.shards[i].jobs = make(map[string]*job)
		a.shards[i].recent = newRecentSet(perShard)
	}
	return a, nil
}

func (a *Assembler) shard(id string) *shard {
	return &a.shards[maphash.String(a.seed, id)%numShards]
}

// HeldBytes is the budget in use: partial jobs' buffers plus completed
// payloads not yet released.
func (a *Assembler) HeldBytes() int64 { return a.held.Load() }

// MaxBytes is the budget's size.
func (a *Assembler) MaxBytes() int64 { return a.cfg.MaxBytes }

// PartialJobs is the number of jobs being assembled.
func (a *Assembler) PartialJobs() int { return int(a.partial.Load()) }

// Release returns n bytes of a completed payload to the budget. Releasing
// more than is held is a caller's bug: nothing is released and an error
// says so.
func (a *Assembler) Release(n int64) error {
	if n <= 0 {
		return nil
	}
	for {
		h := a.held.Load()
		if n > h {
			return fmt.Errorf("releasing %d bytes, only %d are held", n, h)
		}
		if a.held.CompareAndSwap(h, h-n) {
			a.sem.Release(n)
			return nil
		}
	}
}

func (a *Assembler) reserve(n int64) { a.held.Add(n) }

// Add takes one chunk and where it was read from. It returns an error only
// when ctx ends while Add waits for budget room; the chunk is then not
// recorded and its position must not be marked done.
//
// Chunks of a job already being assembled never wait: their bytes were
// reserved with the job's first chunk. Only a new job waits for room, at
// most RoomWait.
func (a *Assembler) Add(ctx context.Context, c wire.Chunk, pos Position) (Result, error) {
	s := a.shard(c.JobID)
	var reserved int64 // bytes acquired for a new job while the lock was released
	s.mu.Lock()
	for {
		if j := s.jobs[c.JobID]; j != nil {
			res := a.addToJob(s, j, c, pos)
			s.mu.Unlock()
			a.releaseReservation(reserved)
			return res, nil
		}
		if s.recent.matches(c) {
			s.mu.Unlock()
			a.releaseReservation(reserved)
			return Result{Outcome: Duplicate, JobID: c.JobID, Type: c.Type, Finished: true}, nil
		}
		if err := c.Validate(); err != nil {
			res := a.rejectNew(s, c, pos, wire.KindOf(err), err)
			s.mu.Unlock()
			a.releaseReservation(reserved)
			return res, nil
		}
		size := int64(c.Size)
		if size > a.cfg.MaxRequestBytes {
			err := fmt.Errorf("job declares %d bytes, the limit is %d: %w", size, a.cfg.MaxRequestBytes, wire.ErrTooLarge)
			res := a.rejectNew(s, c, pos, wire.ErrorTooLarge, err)
			s.mu.Unlock()
			a.releaseReservation(reserved)
			return res, nil
		}
		if reserved == size || a.sem.TryAcquire(size) {
			a.reserve(size)
			res := a.startJob(s, c, pos)
			s.mu.Unlock()
			return res, nil
		}
		if reserved != 0 { // cannot happen: sizes of one job ID agree once validated
			a.sem.Release(reserved)
			reserved = 0
		}
		s.mu.Unlock()
		if err := a.waitForRoom(ctx, size); err != nil {
			if ctx.Err() != nil {
				return Result{}, fmt.Errorf("waiting for %d bytes of assembly budget: %w", size, ctx.Err())
			}
			s.mu.Lock()
			if s.jobs[c.JobID] != nil || s.recent.matches(c) {
				continue // another goroutine started or finished this job meanwhile
			}
			err := fmt.Errorf("no room for %d bytes within %s (%d of %d bytes held): %w",
				size, a.cfg.RoomWait, a.HeldBytes(), a.cfg.MaxBytes, ErrBudget)
			res := a.rejectNew(s, c, pos, wire.ErrorInternal, err)
			s.mu.Unlock()
			return res, nil
		}
		reserved = size
		s.mu.Lock()
	}
}

// releaseReservation gives back bytes acquired for a job that turned out not
// to be new.
func (a *Assembler) releaseReservation(n int64) {
	if n > 0 {
		a.sem.Release(n)
	}
}

func (a *Assembler) waitForRoom(ctx context.Context, n int64) error {
	if a.cfg.RoomWait <= 0 {
		return ErrBudget
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RoomWait)
	defer cancel()
	return a.sem.Acquire(ctx, n)
}

// startJob stores the first chunk of a new job whose bytes are reserved.
// The caller holds s.mu and has validated c.
func (a *Assembler) startJob(s *shard, c wire.Chunk, pos Position) Result {
	j := &job{
		typ: c.Type, count: c.Count, size: c.Size, checksum: c.Checksum,
		lastLen: -1,
		buf:     make([]byte, c.Size),
		have:    make([]uint64, (c.Count+63)/64),
		started: a.cfg.Now(),
	}
	if c.Count > 1 {
		j.positions = make([]Position, 0, min(c.Count, 64))
	}
	s.jobs[c.JobID] = j
	a.partial.Add(1)
	return a.addToJob(s, j, c, pos)
}

// addToJob stores a chunk of an existing job. The caller holds s.mu.
func (a *Assembler) addToJob(s *shard, j *job, c wire.Chunk, pos Position) Result {
	if err := j.accepts(c); err != nil {
		j.positions = append(j.positions, pos)
		return a.rejectJob(s, c.JobID, j, wire.KindOf(err), err)
	}
	if j.have[c.Index/64]&(1<<(c.Index%64)) != 0 {
		return Result{Outcome: Duplicate, JobID: c.JobID, Type: c.Type}
	}
	n := len(c.Data)
	if c.IsLast() {
		j.lastLen = n
	} else {
		j.chunkLen = n
	}
	copy(j.buf[c.Offset():], c.Data)
	j.have[c.Index/64] |= 1 << (c.Index % 64)
	j.received++
	j.positions = append(j.positions, pos)
	if j.received < j.count {
		return Result{Outcome: Pending, JobID: c.JobID, Type: c.Type}
	}
	if err := wire.VerifyChecksum(j.buf, j.checksum); err != nil {
		return a.rejectJob(s, c.JobID, j, wire.ErrorMalformed, err)
	}
	delete(s.jobs, c.JobID)
	a.partial.Add(-1)
	s.recent.add(c.JobID, j.fingerprint())
	return Result{Outcome: Complete, JobID: c.JobID, Type: j.typ, Payload: j.buf, Positions: j.positions}
}

// accepts checks c against what earlier chunks of j declared.
func (j *job) accepts(c wire.Chunk) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var diffs []string
	if c.Type != j.typ {
		diffs = append(diffs, fmt.Sprintf("type %s, not %s", c.Type, j.typ))
	}
	if c.Count != j.count {
		diffs = append(diffs, fmt.Sprintf("%d chunks, not %d", c.Count, j.count))
	}
	if c.Size != j.size {
		diffs = append(diffs, fmt.Sprintf("%d bytes, not %d", c.Size, j.size))
	}
	if c.Checksum != j.checksum {
		diffs = append(diffs, fmt.Sprintf("checksum %08x, not %08x", c.Checksum, j.checksum))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("chunk %d declares %s as earlier chunks did: %w", c.Index, strings.Join(diffs, ", "), wire.ErrMalformed)
	}
	n := len(c.Data)
	if c.IsLast() {
		if j.chunkLen > 0 && c.Size-n != (c.Count-1)*j.chunkLen {
			return fmt.Errorf("last chunk %d has %d bytes, which does not end %d chunks of %d bytes at %d: %w",
				c.Index, n, c.Count-1, j.chunkLen, c.Size, wire.ErrMalformed)
		}
		return nil
	}
	if j.chunkLen > 0 && n != j.chunkLen {
		return fmt.Errorf("chunk %d has %d bytes, earlier chunks have %d: %w", c.Index, n, j.chunkLen, wire.ErrMalformed)
	}
	if j.lastLen >= 0 && c.Size-j.lastLen != (c.Count-1)*n {
		return fmt.Errorf("chunk %d has %d bytes, which the last chunk's %d bytes do not complete to %d: %w",
			c.Index, n, j.lastLen, c.Size, wire.ErrMalformed)
	}
	return nil
}

func (j *job) fingerprint() fingerprint {
	return fingerprint{typ: j.typ, count: j.count, size: j.size, checksum: j.checksum}
}

// rejectJob ends a partial job. The caller holds s.mu.
func (a *Assembler) rejectJob(s *shard, id string, j *job, kind wire.ErrorKind, err error) Result {
	a.dropJob(s, id, j)
	s.recent.add(id, j.fingerprint())
	return Result{Outcome: Rejected, JobID: id, Type: j.typ, Positions: j.positions, Kind: kind, Err: err}
}

// dropJob forgets a partial job and frees its bytes. The caller holds s.mu.
func (a *Assembler) dropJob(s *shard, id string, j *job) {
	delete(s.jobs, id)
	a.partial.Add(-1)
	j.buf = nil
	a.held.Add(-int64(j.size))
	a.sem.Release(int64(j.size))
}

// rejectNew rejects the first chunk seen of a job, holding nothing. The
// caller holds s.mu.
func (a *Assembler) rejectNew(s *shard, c wire.Chunk, pos Position, kind wire.ErrorKind, err error) Result {
	s.recent.add(c.JobID, fingerprintOf(c))
	return Result{Outcome: Rejected, JobID: c.JobID, Type: c.Type, Positions: []Position{pos}, Kind: kind, Err: err}
}

// Expire rejects, as incomplete, every partial job whose first chunk arrived
// AssemblyTimeout or more before now, oldest first, and frees its bytes.
// Their later chunks count as duplicates of a finished job.
func (a *Assembler) Expire(now time.Time) []Result {
	type expired struct {
		res     Result
		started time.Time
	}
	var out []expired
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		for id, j := range s.jobs {
			age := now.Sub(j.started)
			if age < a.cfg.AssemblyTimeout {
				continue
			}
			err := fmt.Errorf("%d of %d chunks arrived within %s (missing %s): %w",
				j.received, j.count, a.cfg.AssemblyTimeout, j.missing(5), ErrIncomplete)
			r := a.rejectJob(s, id, j, wire.ErrorIncomplete, err)
			out = append(out, expired{r, j.started})
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y expired) int { return x.started.Compare(y.started) })
	res := make([]Result, len(out))
	for i := range out {
		res[i] = out[i].res
	}
	return res
}

// missing lists up to limit missing chunk indexes, for messages.
func (j *job) missing(limit int) string {
	var b strings.Builder
	listed := 0
	for w, word := range j.have {
		free := ^word
		for free != 0 && listed < limit {
			i := w*64 + bits.TrailingZeros64(free)
			if i >= j.count {
				break
			}
			if listed > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "chunk %d", i)
			listed++
			free &= free - 1
		}
	}
	if more := j.count - j.received - listed; more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	return b.String()
}

// DropPartition forgets the partial jobs that have a chunk from topic and
// partition, freeing their bytes, and returns how many. Call it when the
// partition is revoked: the chunks were not committed, so the partition's
// next owner reads them again and answers the jobs; they are not
// remembered as finished here.
func (a *Assembler) DropPartition(topic string, partition int32) int {
	dropped := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		for id, j := range s.jobs {
			if slices.ContainsFunc(j.positions, func(p Position) bool { return p.Topic == topic && p.Partition == partition }) {
				a.dropJob(s, id, j)
				dropped++
			}
		}
		s.mu.Unlock()
	}
	return dropped
}

// Forget drops a finished job from the memory of finished jobs, so that its
// redelivered chunks make a new job. Call it when a job was given up without
// an answer (its partition was revoked mid-call): the next delivery of its
// chunks must run it again, not be ignored as a duplicate.
func (a *Assembler) Forget(jobID string) {
	s := a.shard(jobID)
	s.mu.Lock()
	s.recent.forget(jobID)
	s.mu.Unlock()
}
