package offsets

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestOutOfOrderJobs walks through multi-chunk jobs whose chunks interleave
// in a partition and whose responses are acknowledged out of order.
func TestOutOfOrderJobs(t *testing.T) {
	type step struct {
		done []int64 // offsets of the job whose response was acknowledged
		want int64   // committable after it
	}
	cases := []struct {
		name    string
		tracked []int64
		steps   []step
	}{
		{
			// 0:A0 1:B0 2:A1 3:C0 4:B1; C answered first, then A, then B.
			name:    "interleaved chunks",
			tracked: []int64{0, 1, 2, 3, 4},
			steps: []step{
				{nil, 0},
				{[]int64{3}, 0},    // C: a later job finishing moves nothing
				{[]int64{0, 2}, 1}, // A: B0 at 1 still holds the commit
				{[]int64{1, 4}, 5}, // B: all done, commit past the last
			},
		},
		{
			// Gaps (transaction markers, compaction) are never waited for.
			name:    "gaps",
			tracked: []int64{10, 11, 15, 16, 100},
			steps: []step{
				{nil, 10},
				{[]int64{10}, 11},
				{[]int64{16, 100}, 11},
				{[]int64{11}, 15},
				{[]int64{15}, 101},
			},
		},
		{
			name:    "reverse completion",
			tracked: []int64{5, 6, 7, 8},
			steps: []step{
				{[]int64{8}, 5},
				{[]int64{7}, 5},
				{[]int64{6}, 5},
				{[]int64{5}, 9},
			},
		},
		{
			// The job whose first chunk is lowest completes last: a big job
			// interleaved with many small ones holds the commit point.
			name:    "big job holds the commit point",
			tracked: []int64{0, 1, 2, 3, 4, 5, 6},
			steps: []step{
				{[]int64{1}, 0},
				{[]int64{3}, 0},
				{[]int64{5}, 0},
				{[]int64{0, 2, 4, 6}, 7},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tr Tracker
			if _, ok := tr.Committable(); ok {
				t.Fatal("committable before anything was tracked")
			}
			for _, o := range tc.tracked {
				if err := tr.Track(o); err != nil {
					t.Fatal(err)
				}
			}
			pending := len(tc.tracked)
			for i, s := range tc.steps {
				for _, o := range s.done {
					if !tr.Done(o) {
						t.Fatalf("step %d: Done(%d) = false", i, o)
					}
					pending--
				}
				if got, ok := tr.Committable(); !ok || got != s.want {
					t.Fatalf("step %d: committable %d (%v), want %d", i, got, ok, s.want)
				}
				if tr.Pending() != pending {
					t.Fatalf("step %d: pending %d, want %d", i, tr.Pending(), pending)
				}
			}
		})
	}
}

func TestDoneOfUnknownOffsets(t *testing.T) {
	var tr Tracker
	if tr.Done(0) {
		t.Fatal("Done on an empty tracker")
	}
	for _, o := range []int64{10, 12, 13} {
		if err := tr.Track(o); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []int64{9, 11, 14, -1} {
		if tr.Done(o) {
			t.Errorf("Done(%d) of an untracked offset = true", o)
		}
	}
	if !tr.Done(12) || tr.Done(12) {
		t.Error("Done(12) twice: want true then false")
	}
	if !tr.Done(10) || tr.Done(10) {
		t.Error("Done(10) twice (popped from the ring): want true then false")
	}
	if got, _ := tr.Committable(); got != 13 || tr.Pending() != 1 {
		t.Errorf("committable %d pending %d, want 13 and 1", got, tr.Pending())
	}
	if err := tr.Track(13); !errors.Is(err, ErrNotIncreasing) {
		t.Errorf("Track(13) again: %v", err)
	}
	if err := tr.Track(2); !errors.Is(err, ErrNotIncreasing) {
		t.Errorf("Track(2) after 13: %v", err)
	}
	if err := tr.Track(-5); err == nil {
		t.Error("negative offset tracked")
	}
	if got, _ := tr.Committable(); got != 13 {
		t.Errorf("a refused Track moved the commit point to %d", got)
	}
}

// reference is the obviously correct model: a map of tracked offsets.
type reference struct {
	done    map[int64]bool
	last    int64
	started bool
}

func (r *reference) committable() (int64, bool) {
	if !r.started {
		return 0, false
	}
	low := r.last + 1
	for o, d := range r.done {
		if !d && o < low {
			low = o
		}
	}
	return low, true
}

// TestAgainstReference runs random Track/Done sequences, with gaps, out of
// order completion, repeated and bogus Done calls, and a ring that grows and
// wraps, and compares every answer with the reference model.
func TestAgainstReference(t *testing.T) {
	for seed := range uint64(24) {
		rng := rand.New(rand.NewPCG(seed, seed*31+1))
		// Most seeds keep the outstanding set small (it wraps the ring
		// often); every fourth lets it grow (the ring grows while wrapped).
		trackBelow := 4
		if seed%4 == 0 {
			trackBelow = 5
		}
		var tr Tracker
		ref := reference{done: map[int64]bool{}}
		var outstanding []int64
		next := int64(rng.IntN(1000))
		var lastCommit int64 = -1
		for op := range 3000 {
			switch r := rng.IntN(10); {
			case r < trackBelow: // track, sometimes after a gap
				if rng.IntN(8) == 0 {
					next += int64(1 + rng.IntN(50))
				}
				if err := tr.Track(next); err != nil {
					t.Fatalf("seed %d op %d: %v", seed, op, err)
				}
				ref.done[next], ref.last, ref.started = false, next, true
				outstanding = append(outstanding, next)
				next++
			case r < 8 && len(outstanding) > 0: // finish a random outstanding offset
				k := rng.IntN(len(outstanding))
				o := outstanding[k]
				outstanding = append(outstanding[:k], outstanding[k+1:]...)
				if !tr.Done(o) {
					t.Fatalf("seed %d op %d: Done(%d) = false", seed, op, o)
				}
				ref.done[o] = true
			default: // a bogus Done: done already, never tracked, or in the future
				o := next - 1 - int64(rng.IntN(100))
				want := false
				if d, ok := ref.done[o]; ok && !d {
					want = true // it happened to be outstanding
					for k, x := range outstanding {
						if x == o {
							outstanding = append(outstanding[:k], outstanding[k+1:]...)
							break
						}
					}
					ref.done[o] = true
				}
				if got := tr.Done(o); got != want {
					t.Fatalf("seed %d op %d: Done(%d) = %v, want %v", seed, op, o, got, want)
				}
			}
			got, ok := tr.Committable()
			want, wantOK := ref.committable()
			if got != want || ok != wantOK {
				t.Fatalf("seed %d op %d: committable %d %v, reference %d %v", seed, op, got, ok, want, wantOK)
			}
			if ok && got < lastCommit {
				t.Fatalf("seed %d op %d: committable went back from %d to %d", seed, op, lastCommit, got)
			}
			lastCommit = got
			if tr.Pending() != len(outstanding) {
				t.Fatalf("seed %d op %d: pending %d, want %d", seed, op, tr.Pending(), len(outstanding))
			}
			// Prune the reference so that committable() stays cheap.
			if op%16 == 0 {
				for o, d := range ref.done {
					if d && o < want {
						delete(ref.done, o)
					}
				}
			}
		}
	}
}

// BenchmarkInOrder: every message done right after it is tracked.
func BenchmarkInOrder(b *testing.B) {
	var tr Tracker
	var o int64
	b.ReportAllocs()
	for b.Loop() {
		_ = tr.Track(o)
		tr.Done(o)
		o++
	}
}

// BenchmarkOutOfOrder100k keeps 100k offsets outstanding and finishes a
// random one per tracked offset, with a gap every 16 offsets.
func BenchmarkOutOfOrder100k(b *testing.B) {
	const outstanding = 100_000
	var tr Tracker
	rng := rand.New(rand.NewPCG(1, 2))
	window := make([]int64, 0, outstanding)
	var o int64
	track := func() {
		if o%16 == 0 {
			o += 2 // a gap
		}
		_ = tr.Track(o)
		window = append(window, o)
		o++
	}
	for range outstanding {
		track()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		k := rng.IntN(len(window))
		tr.Done(window[k])
		window[k] = window[len(window)-1]
		window = window[:len(window)-1]
		track()
		tr.Committable()
	}
}
