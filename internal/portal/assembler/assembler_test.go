package assembler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"kafkasend.io/kafkasend/pkg/wire"
)

// chunkBytes is the data per chunk in these tests.
const chunkBytes = 100

func payloadOf(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// chunksOf splits a payload of n bytes into chunks of chunkBytes.
func chunksOf(t testing.TB, id string, n int, seed uint64) ([]wire.Chunk, []byte) {
	t.Helper()
	p := payloadOf(n, seed)
	maxMsg := chunkBytes + (1024 - wire.ChunkDataBudget(id, 1024))
	cs, err := wire.Split(id, wire.TypeRequest, p, maxMsg)
	if err != nil {
		t.Fatal(err)
	}
	if want := max(1, (n+chunkBytes-1)/chunkBytes); len(cs) != want {
		t.Fatalf("%d chunks, want %d", len(cs), want)
	}
	return cs, p
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func newAssembler(t testing.TB, mod func(*Config)) (*Assembler, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := Config{MaxRequestBytes: 10_000, MaxBytes: 100_000, AssemblyTimeout: time.Minute, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, clk
}

func pos(p int32, off int64) Position { return Position{Topic: "requests", Partition: p, Offset: off} }

func add(t testing.TB, a *Assembler, c wire.Chunk, p Position) Result {
	t.Helper()
	r, err := a.Add(context.Background(), c, p)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return r
}

func expectOutcome(t testing.TB, r Result, want Outcome) {
	t.Helper()
	if r.Outcome != want {
		t.Fatalf("outcome %s (kind %q, err %v), want %s", r.Outcome, r.Kind, r.Err, want)
	}
}

func TestAssemblesInAnyOrder(t *testing.T) {
	orders := map[string][]int{
		"in order":      {0, 1, 2, 3, 4},
		"reversed":      {4, 3, 2, 1, 0},
		"last first":    {4, 0, 1, 2, 3},
		"shuffled":      {2, 4, 0, 3, 1},
		"last is short": {0, 1, 2, 3, 4},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			a, _ := newAssembler(t, nil)
			n := 450
			if name == "last is short" {
				n = 401
			}
			cs, p := chunksOf(t, "job", n, 1)
			var res Result
			for i, idx := range order {
				res = add(t, a, cs[idx], pos(0, int64(10+idx)))
				if i < len(order)-1 {
					expectOutcome(t, res, Pending)
					if a.PartialJobs() != 1 || a.HeldBytes() != int64(n) {
						t.Fatalf("after %d chunks: %d partial jobs, %d bytes held", i+1, a.PartialJobs(), a.HeldBytes())
					}
				}
			}
			expectOutcome(t, res, Complete)
			if !bytes.Equal(res.Payload, p) || res.JobID != "job" || res.Type != wire.TypeRequest {
				t.Fatalf("complete result: job %q type %q, payload equal %v", res.JobID, res.Type, bytes.Equal(res.Payload, p))
			}
			if len(res.Positions) != len(order) {
				t.Fatalf("positions %v", res.Positions)
			}
			for i, idx := range order {
				if res.Positions[i] != pos(0, int64(10+idx)) {
					t.Fatalf("position %d = %v, want offset %d (arrival order)", i, res.Positions[i], 10+idx)
				}
			}
			if cap(res.Payload) != n {
				t.Errorf("payload capacity %d, want one buffer of exactly %d", cap(res.Payload), n)
			}
			if a.PartialJobs() != 0 || a.HeldBytes() != int64(n) {
				t.Fatalf("after completion: %d partial, %d held (want 0, %d until released)", a.PartialJobs(), a.HeldBytes(), n)
			}
			if err := a.Release(int64(len(res.Payload))); err != nil || a.HeldBytes() != 0 {
				t.Fatalf("Release: %v, held %d", err, a.HeldBytes())
			}
		})
	}
}

func TestSingleChunkAndEmptyPayload(t *testing.T) {
	a, _ := newAssembler(t, nil)
	for _, n := range []int{0, 1, chunkBytes} {
		id := fmt.Sprintf("one-%d", n)
		cs, p := chunksOf(t, id, n, 2)
		r := add(t, a, cs[0], pos(0, 1))
		expectOutcome(t, r, Complete)
		if !bytes.Equal(r.Payload, p) || len(r.Positions) != 1 {
			t.Fatalf("%d bytes: payload equal %v, positions %v", n, bytes.Equal(r.Payload, p), r.Positions)
		}
		if err := a.Release(int64(len(r.Payload))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDuplicates(t *testing.T) {
	a, _ := newAssembler(t, nil)
	cs, p := chunksOf(t, "dup", 250, 3)
	expectOutcome(t, add(t, a, cs[0], pos(0, 1)), Pending)
	r := add(t, a, cs[0], pos(0, 2)) // redelivered while pending
	expectOutcome(t, r, Duplicate)
	if r.Finished || r.JobID != "dup" {
		t.Fatalf("duplicate of a pending chunk: %+v", r)
	}
	expectOutcome(t, add(t, a, cs[1], pos(0, 3)), Pending)
	r = add(t, a, cs[2], pos(0, 4))
	expectOutcome(t, r, Complete)
	if len(r.Positions) != 3 || r.Positions[1] != pos(0, 3) {
		t.Fatalf("positions %v: the duplicate's must not be among them", r.Positions)
	}
	if !bytes.Equal(r.Payload, p) {
		t.Fatal("payload differs")
	}
	// Every chunk of the finished job is now a duplicate, and holds nothing.
	for i, c := range cs {
		r := add(t, a, c, pos(0, int64(5+i)))
		expectOutcome(t, r, Duplicate)
		if !r.Finished {
			t.Fatalf("chunk %d of a completed job: Finished = false", i)
		}
	}
	if a.PartialJobs() != 0 {
		t.Fatalf("%d partial jobs after duplicates", a.PartialJobs())
	}
	// A new payload under the same ID is a new job, not a duplicate.
	cs2, p2 := chunksOf(t, "dup", 250, 4)
	expectOutcome(t, add(t, a, cs2[0], pos(0, 9)), Pending)
	expectOutcome(t, add(t, a, cs2[1], pos(0, 10)), Pending)
	r = add(t, a, cs2[2], pos(0, 11))
	expectOutcome(t, r, Complete)
	if !bytes.Equal(r.Payload, p2) {
		t.Fatal("reused ID: payload differs")
	}
}

func TestRejections(t *testing.T) {
	base, _ := chunksOf(t, "bad", 250, 5) // 100 + 100 + 50 bytes
	other, _ := chunksOf(t, "bad", 250, 6)
	mod := func(i int, f func(c *wire.Chunk)) wire.Chunk { c := base[i]; f(&c); return c }
	cases := []struct {
		name   string
		before []wire.Chunk // accepted first (Pending)
		bad    wire.Chunk
		kind   wire.ErrorKind
		is     error
		text   string
	}{
		{"index out of range, new job", nil, mod(0, func(c *wire.Chunk) { c.Index = 3 }), wire.ErrorMalformed, wire.ErrMalformed, "index 3 is out of range for 3 chunks"},
		{"index out of range, pending job", base[:1], mod(1, func(c *wire.Chunk) { c.Index = 7 }), wire.ErrorMalformed, wire.ErrMalformed, "index 7 is out of range"},
		{"count conflict", base[:1], mod(1, func(c *wire.Chunk) { c.Count = 4; c.Size = 350 }), wire.ErrorMalformed, wire.ErrMalformed, "4 chunks, not 3"},
		{"size conflict", base[:1], mod(2, func(c *wire.Chunk) { c.Size = 260; c.Data = make([]byte, 60) }), wire.ErrorMalformed, wire.ErrMalformed, "260 bytes, not 250"},
		{"checksum conflict", base[:1], mod(1, func(c *wire.Chunk) { c.Checksum++ }), wire.ErrorMalformed, wire.ErrMalformed, "checksum"},
		{"type conflict", base[:1], mod(1, func(c *wire.Chunk) { c.Type = wire.TypeResponse }), wire.ErrorMalformed, wire.ErrMalformed, "type response, not request"},
		{"chunk length conflict", []wire.Chunk{base[0]}, mod(1, func(c *wire.Chunk) { c.Data = make([]byte, 110) }), wire.ErrorMalformed, wire.ErrMalformed, "chunk 1 has 110 bytes, earlier chunks have 100"},
		{"last chunk does not fit", []wire.Chunk{base[0]}, mod(2, func(c *wire.Chunk) { c.Size = 250; c.Data = make([]byte, 25) }), wire.ErrorMalformed, wire.ErrMalformed, "last chunk 2 of 3 has 25 bytes"},
		{"last chunk before, others differ", []wire.Chunk{mod(2, func(c *wire.Chunk) { c.Size = 250 })}, mod(0, func(c *wire.Chunk) { c.Data = make([]byte, 120) }), wire.ErrorMalformed, wire.ErrMalformed, "which the last chunk's 50 bytes do not complete"},
		{"checksum mismatch", base[:2], mod(2, func(c *wire.Chunk) { c.Data = other[2].Data }), wire.ErrorMalformed, wire.ErrChecksum, "CRC-32C is"},
		{"too large", nil, mod(0, func(c *wire.Chunk) { c.Size = 10_001; c.Count = 101 }), wire.ErrorTooLarge, wire.ErrTooLarge, "declares 10001 bytes, the limit is 10000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newAssembler(t, nil)
			for i, c := range tc.before {
				expectOutcome(t, add(t, a, c, pos(0, int64(i))), Pending)
			}
			r := add(t, a, tc.bad, pos(0, 100))
			expectOutcome(t, r, Rejected)
			if r.Kind != tc.kind || !errors.Is(r.Err, tc.is) || !strings.Contains(r.Err.Error(), tc.text) {
				t.Fatalf("rejected with %q: %v; want %q, %v, saying %q", r.Kind, r.Err, tc.kind, tc.is, tc.text)
			}
			if len(r.Positions) != len(tc.before)+1 || r.Positions[len(r.Positions)-1] != pos(0, 100) {
				t.Fatalf("positions %v: want the %d earlier chunks' and the rejected one's", r.Positions, len(tc.before))
			}
			if a.HeldBytes() != 0 || a.PartialJobs() != 0 {
				t.Fatalf("rejected job still holds %d bytes, %d partial", a.HeldBytes(), a.PartialJobs())
			}
			// The job is answered: its remaining chunks are duplicates of a
			// finished job, not a new job to answer again.
			for i, c := range base {
				if tc.name == "too large" || tc.name == "index out of range, new job" {
					c = tc.bad // a new job is remembered by the chunk that declared it
					c.Index = min(i, c.Count-1)
				}
				r := add(t, a, c, pos(0, int64(200+i)))
				if r.Outcome != Duplicate || !r.Finished {
					t.Fatalf("later chunk %d of the rejected job: %s (finished %v, err %v)", i, r.Outcome, r.Finished, r.Err)
				}
			}
		})
	}
}

func TestTooLargeHoldsNothing(t *testing.T) {
	a, _ := newAssembler(t, nil)
	cs, _ := chunksOf(t, "huge", 10_001, 8)
	r := add(t, a, cs[3], pos(0, 1))
	expectOutcome(t, r, Rejected)
	if r.Kind != wire.ErrorTooLarge || a.HeldBytes() != 0 {
		t.Fatalf("kind %q, held %d", r.Kind, a.HeldBytes())
	}
	for i, c := range cs {
		if r := add(t, a, c, pos(0, int64(2+i))); r.Outcome != Duplicate || !r.Finished {
			t.Fatalf("chunk %d after rejection: %s", i, r.Outcome)
		}
	}
}

func TestBudgetExhaustedWithoutWait(t *testing.T) {
	a, _ := newAssembler(t, func(c *Config) { c.MaxBytes = 10_000 })
	big, pBig := chunksOf(t, "big", 9_000, 9)
	small, pSmall := chunksOf(t, "small", 1_500, 10)
	expectOutcome(t, add(t, a, big[0], pos(0, 1)), Pending)
	r := add(t, a, small[0], pos(0, 2))
	expectOutcome(t, r, Rejected)
	if r.Kind != wire.ErrorInternal || !errors.Is(r.Err, ErrBudget) || !strings.Contains(r.Err.Error(), "9000 of 10000 bytes held") {
		t.Fatalf("kind %q err %v", r.Kind, r.Err)
	}
	if r2 := add(t, a, small[1], pos(0, 3)); r2.Outcome != Duplicate || !r2.Finished {
		t.Fatalf("later chunk of the budget-rejected job: %s", r2.Outcome)
	}
	// Chunks of the job already held never wait for room.
	var done Result
	for i, c := range big[1:] {
		done = add(t, a, c, pos(0, int64(10+i)))
	}
	expectOutcome(t, done, Complete)
	if !bytes.Equal(done.Payload, pBig) {
		t.Fatal("payload differs")
	}
	if a.HeldBytes() != 9_000 {
		t.Fatalf("held %d, want 9000 until released", a.HeldBytes())
	}
	if err := a.Release(9_000); err != nil {
		t.Fatal(err)
	}
	// With room again, a new job under another ID fits.
	again, _ := chunksOf(t, "small-2", 1_500, 10)
	var last Result
	for i, c := range again {
		last = add(t, a, c, pos(0, int64(50+i)))
	}
	expectOutcome(t, last, Complete)
	if !bytes.Equal(last.Payload, pSmall) {
		t.Fatal("payload differs")
	}
}

func TestBackpressureWaitsForRoom(t *testing.T) {
	a, _ := newAssembler(t, func(c *Config) { c.MaxBytes = 10_000; c.RoomWait = 5 * time.Second })
	big, _ := chunksOf(t, "big", 9_000, 11)
	small, _ := chunksOf(t, "small", 1_500, 12)
	var bigDone Result
	for i, c := range big {
		bigDone = add(t, a, c, pos(0, int64(i)))
	}
	expectOutcome(t, bigDone, Complete) // 9000 bytes held until released

	got := make(chan Result, 1)
	go func() {
		r, err := a.Add(context.Background(), small[0], pos(1, 0))
		if err != nil {
			r = Result{Err: err}
		}
		got <- r
	}()
	select {
	case r := <-got:
		t.Fatalf("Add did not wait for room: %s %v", r.Outcome, r.Err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := a.Release(9_000); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		expectOutcome(t, r, Pending)
	case <-time.After(4 * time.Second):
		t.Fatal("Add still waiting after room was released")
	}
	if a.HeldBytes() != 1_500 || a.PartialJobs() != 1 {
		t.Fatalf("held %d partial %d", a.HeldBytes(), a.PartialJobs())
	}
}

func TestWaitForRoomEnds(t *testing.T) {
	a, _ := newAssembler(t, func(c *Config) { c.MaxBytes = 10_000; c.RoomWait = 50 * time.Millisecond })
	big, _ := chunksOf(t, "big", 9_000, 13)
	small, _ := chunksOf(t, "small", 1_500, 14)
	expectOutcome(t, add(t, a, big[0], pos(0, 0)), Pending)

	// RoomWait passes: the job is rejected.
	start := time.Now()
	r := add(t, a, small[0], pos(0, 1))
	if r.Outcome != Rejected || !errors.Is(r.Err, ErrBudget) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("after %s: %s %v, want a budget rejection after RoomWait", time.Since(start), r.Outcome, r.Err)
	}

	// The caller's context ends first: nothing is recorded.
	other, _ := chunksOf(t, "other", 1_500, 15)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Add(ctx, other[0], pos(0, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add with a cancelled context: %v", err)
	}
	if a.PartialJobs() != 1 || a.HeldBytes() != 9_000 {
		t.Fatalf("cancelled Add left %d partial, %d held", a.PartialJobs(), a.HeldBytes())
	}
	a.DropPartition("requests", 0)
	if r := add(t, a, other[0], pos(0, 2)); r.Outcome != Pending {
		t.Fatalf("the chunk whose Add was cancelled is not new: %s", r.Outcome)
	}
}

func TestExpire(t *testing.T) {
	a, clk := newAssembler(t, nil)
	old, _ := chunksOf(t, "old", 450, 16)
	young, _ := chunksOf(t, "young", 250, 17)
	older, _ := chunksOf(t, "older", 150, 18)
	t0 := clk.Now()
	expectOutcome(t, add(t, a, older[1], pos(0, 1)), Pending)
	clk.Add(time.Second)
	expectOutcome(t, add(t, a, old[0], pos(0, 2)), Pending)
	expectOutcome(t, add(t, a, old[3], pos(0, 3)), Pending)
	clk.Add(30 * time.Second)
	expectOutcome(t, add(t, a, young[0], pos(0, 4)), Pending)
	// The clock of the last chunk does not matter: age counts from the first.
	clk.Add(29 * time.Second)
	expectOutcome(t, add(t, a, old[1], pos(0, 5)), Pending)

	if r := a.Expire(t0.Add(time.Minute - time.Nanosecond)); len(r) != 0 {
		t.Fatalf("expired before the timeout: %v", r)
	}
	r := a.Expire(t0.Add(time.Minute + time.Second))
	if len(r) != 2 || r[0].JobID != "older" || r[1].JobID != "old" {
		t.Fatalf("expired %v, want older then old", r)
	}
	for _, x := range r {
		if x.Outcome != Rejected || x.Kind != wire.ErrorIncomplete || !errors.Is(x.Err, ErrIncomplete) {
			t.Fatalf("expired result %+v", x)
		}
	}
	if msg := r[1].Err.Error(); !strings.Contains(msg, "3 of 5 chunks arrived within 1m0s (missing chunk 2, chunk 4)") {
		t.Errorf("message %q", msg)
	}
	if got := r[1].Positions; len(got) != 3 || got[0] != pos(0, 2) || got[2] != pos(0, 5) {
		t.Errorf("positions %v", got)
	}
	if a.PartialJobs() != 1 || a.HeldBytes() != 250 {
		t.Fatalf("after expiry: %d partial, %d held", a.PartialJobs(), a.HeldBytes())
	}
	// A late chunk of an expired job belongs to an answered job.
	if x := add(t, a, old[2], pos(0, 9)); x.Outcome != Duplicate || !x.Finished {
		t.Fatalf("late chunk: %s", x.Outcome)
	}
	// Missing lists stay short for big jobs.
	big, _ := chunksOf(t, "big", 2_000, 19)
	expectOutcome(t, add(t, a, big[3], pos(0, 10)), Pending)
	r = a.Expire(clk.Add(time.Hour))
	if len(r) != 2 {
		t.Fatalf("expired %d jobs", len(r))
	}
	for _, x := range r {
		if x.JobID == "big" && !strings.Contains(x.Err.Error(), "missing chunk 0, chunk 1, chunk 2, chunk 4, chunk 5 and 14 more") {
			t.Errorf("message %q", x.Err)
		}
	}
	if a.HeldBytes() != 0 || a.PartialJobs() != 0 {
		t.Fatalf("after expiring all: %d held, %d partial", a.HeldBytes(), a.PartialJobs())
	}
}

func TestDropPartition(t *testing.T) {
	a, _ := newAssembler(t, nil)
	j1, p1 := chunksOf(t, "p1", 250, 20)
	j2, _ := chunksOf(t, "p2", 250, 21)
	expectOutcome(t, add(t, a, j1[0], pos(1, 0)), Pending)
	expectOutcome(t, add(t, a, j2[0], pos(2, 0)), Pending)
	if n := a.DropPartition("requests", 1); n != 1 {
		t.Fatalf("dropped %d jobs, want 1", n)
	}
	if n := a.DropPartition("other-topic", 2); n != 0 {
		t.Fatalf("dropped %d jobs of another topic", n)
	}
	if a.PartialJobs() != 1 || a.HeldBytes() != 250 {
		t.Fatalf("%d partial, %d held", a.PartialJobs(), a.HeldBytes())
	}
	// Redelivered from the start (to us or another owner), the job assembles anew.
	var r Result
	for i, c := range j1 {
		r = add(t, a, c, pos(1, int64(i)))
	}
	expectOutcome(t, r, Complete)
	if !bytes.Equal(r.Payload, p1) || len(r.Positions) != 3 {
		t.Fatalf("reassembled after drop: equal %v, positions %v", bytes.Equal(r.Payload, p1), r.Positions)
	}
}

// TestInterleavedJobs feeds the chunks of many jobs from several partitions
// in a random interleaving, with redeliveries, from one goroutine per
// partition while an expiry loop and a releaser run (go test -race).
func TestInterleavedJobs(t *testing.T) {
	const partitions, jobsPerPartition = 4, 60
	// Partial jobs alone never exceed 4 partitions x 8 jobs x 2500 bytes, so waits
	// (for completed payloads not yet released) always end.
	a, _ := newAssembler(t, func(c *Config) { c.MaxBytes = 90_000; c.RoomWait = 5 * time.Second })
	type jobData struct {
		chunks  []wire.Chunk
		payload []byte
	}
	jobs := map[string]jobData{}
	feeds := make([][]wire.Chunk, partitions)
	rng := rand.New(rand.NewPCG(1, 2))
	for p := range partitions {
		var stream []wire.Chunk
		// Chunks of a job stay in order within its partition (one producer,
		// one key), but jobs interleave.
		var queues [][]wire.Chunk
		for j := range jobsPerPartition {
			id := fmt.Sprintf("p%d-j%d", p, j)
			cs, pl := chunksOf(t, id, 1+rng.IntN(2_500), uint64(p*1000+j))
			jobs[id] = jobData{cs, pl}
			queues = append(queues, cs)
		}
		for len(queues) > 0 {
			q := rng.IntN(min(len(queues), 8)) // a window of 8 jobs in flight
			stream = append(stream, queues[q][0])
			if rng.IntN(10) == 0 {
				stream = append(stream, queues[q][0]) // redelivered
			}
			if queues[q] = queues[q][1:]; len(queues[q]) == 0 {
				queues = append(queues[:q], queues[q+1:]...)
			}
		}
		feeds[p] = stream
	}

	var mu sync.Mutex
	completed := map[string]int{}
	results := make(chan Result, 64)
	stop := make(chan struct{})
	var wg, releaser sync.WaitGroup
	releaser.Add(1)
	go func() { // executes and releases completed jobs
		defer releaser.Done()
		for r := range results {
			if err := a.Release(int64(len(r.Payload))); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Add(1)
	go func() { // expiry loop; nothing is old enough to expire
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if r := a.Expire(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)); len(r) > 0 {
					t.Errorf("expired %v", r)
				}
				_ = a.HeldBytes() + int64(a.PartialJobs())
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var consumers sync.WaitGroup
	for p := range partitions {
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			for off, c := range feeds[p] {
				r, err := a.Add(context.Background(), c, pos(int32(p), int64(off)))
				if err != nil {
					t.Error(err)
					return
				}
				switch r.Outcome {
				case Complete:
					if !bytes.Equal(r.Payload, jobs[r.JobID].payload) {
						t.Errorf("job %s: payload differs", r.JobID)
					}
					if len(r.Positions) != len(jobs[r.JobID].chunks) {
						t.Errorf("job %s: %d positions for %d chunks", r.JobID, len(r.Positions), len(jobs[r.JobID].chunks))
					}
					mu.Lock()
					completed[r.JobID]++
					mu.Unlock()
					results <- r
				case Rejected:
					t.Errorf("job %s rejected: %v", r.JobID, r.Err)
				case Duplicate:
					if r.Finished && len(jobs[r.JobID].chunks) > 1 {
						// Only a redelivered last chunk (or single chunk) follows completion.
						if c.Index != c.Count-1 {
							t.Errorf("job %s chunk %d: duplicate of a finished job before its last chunk", r.JobID, c.Index)
						}
					}
				}
			}
		}()
	}
	consumers.Wait()
	close(stop)
	wg.Wait()
	close(results)
	releaser.Wait()
	if len(completed) != len(jobs) {
		t.Fatalf("%d of %d jobs completed", len(completed), len(jobs))
	}
	for id, n := range completed {
		if n != 1 {
			t.Errorf("job %s completed %d times", id, n)
		}
	}
	if a.HeldBytes() != 0 || a.PartialJobs() != 0 {
		t.Fatalf("at the end: %d held, %d partial", a.HeldBytes(), a.PartialJobs())
	}
}

func TestRecentSetEvictsOldest(t *testing.T) {
	r := newRecentSet(3)
	fp := func(n int) fingerprint { return fingerprint{typ: wire.TypeRequest, count: 1, size: n} }
	chunk := func(id string, n int) wire.Chunk {
		return wire.Chunk{JobID: id, Type: wire.TypeRequest, Count: 1, Size: n}
	}
	r.add("a", fp(1))
	r.add("b", fp(2))
	r.add("a", fp(3)) // a finished again, with another payload
	r.add("c", fp(4)) // evicts the slot of the first a, which is stale: a stays
	if !r.matches(chunk("a", 3)) || r.matches(chunk("a", 1)) || !r.matches(chunk("b", 2)) || !r.matches(chunk("c", 4)) {
		t.Fatalf("after 4 adds: %+v", r.byID)
	}
	r.add("d", fp(5)) // evicts b
	if r.matches(chunk("b", 2)) || r.len() != 3 {
		t.Fatalf("b not evicted: %+v", r.byID)
	}
	r.add("e", fp(6)) // evicts a
	if r.matches(chunk("a", 3)) || r.len() != 3 {
		t.Fatalf("a not evicted: %+v", r.byID)
	}
}

func TestReleaseAndConfig(t *testing.T) {
	a, _ := newAssembler(t, nil)
	if err := a.Release(1); err == nil {
		t.Error("releasing bytes never held succeeded")
	}
	if err := a.Release(0); err != nil {
		t.Error(err)
	}
	for name, cfg := range map[string]Config{
		"no max request":   {MaxBytes: 1, AssemblyTimeout: time.Second},
		"budget too small": {MaxRequestBytes: 10, MaxBytes: 9, AssemblyTimeout: time.Second},
		"no timeout":       {MaxRequestBytes: 10, MaxBytes: 10},
		"negative wait":    {MaxRequestBytes: 10, MaxBytes: 10, AssemblyTimeout: time.Second, RoomWait: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if a.MaxBytes() != 100_000 || Complete.String() != "complete" || Outcome(9).String() != "Outcome(9)" {
		t.Error("accessors")
	}
}

func BenchmarkAdd(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dB-in-%dB-chunks", size, 16<<10), func(b *testing.B) {
			a, err := New(Config{MaxRequestBytes: 2 << 20, MaxBytes: 64 << 20, AssemblyTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			p := payloadOf(size, 1)
			cs, err := wire.Split("bench-job", wire.TypeRequest, p, 16<<10)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				id := fmt.Sprintf("job-%d", i)
				for _, c := range cs {
					c.JobID = id
					r, err := a.Add(ctx, c, Position{Topic: "t", Offset: int64(i)})
					if err != nil {
						b.Fatal(err)
					}
					if r.Outcome == Complete {
						_ = a.Release(int64(len(r.Payload)))
					}
				}
			}
		})
	}
}

func TestForgottenJobRunsAgain(t *testing.T) {
	a, err := New(Config{MaxRequestBytes: 1 << 20, MaxBytes: 1 << 20, AssemblyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("payload of a job given up on revoke")
	chunks, err := wire.Split("JOB1", wire.TypeRequest, payload, 4096)
	if err != nil {
		t.Fatal(err)
	}
	pos := Position{Topic: "t", Partition: 0, Offset: 1}
	if r, _ := a.Add(context.Background(), chunks[0], pos); r.Outcome != Complete {
		t.Fatalf("first delivery: %v", r.Outcome)
	}
	if r, _ := a.Add(context.Background(), chunks[0], pos); r.Outcome != Duplicate || !r.Finished {
		t.Fatalf("redelivery before Forget: %v finished=%v, want a finished duplicate", r.Outcome, r.Finished)
	}
	a.Forget("JOB1")
	if r, _ := a.Add(context.Background(), chunks[0], pos); r.Outcome != Complete {
		t.Fatalf("redelivery after Forget: %v, want complete (run again)", r.Outcome)
	}
}
