package assembler

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"kafkasend.io/kafkasend/pkg/wire"
)

// FuzzAssemblerSequences drives an assembler with a sequence of chunk
// deliveries of three jobs (in any order, repeated, corrupted, with a
// changed size or count), expiries and releases, and checks what the portal
// relies on: Add never fails, a completed payload is exactly the job's, a
// job has one final outcome (Complete or Rejected), plus at most one per
// change of the size or count its chunks declare (such a chunk is taken for
// a new job reusing the ID), the budget is
// never negative or over its limit, and once everything is released and
// expired nothing is held.
func FuzzAssemblerSequences(f *testing.F) {
	f.Add(uint16(250), uint16(1), uint16(420), []byte{0, 8, 16, 1, 9, 17, 2, 10, 18, 3, 11, 19, 4, 12})
	f.Add(uint16(300), uint16(99), uint16(100), []byte{3, 2, 1, 0, 0, 7, 6, 5, 4, 6, 6, 7})
	f.Add(uint16(1), uint16(1), uint16(1), []byte{0, 0, 0, 8, 16, 6, 6, 6})
	f.Add(uint16(450), uint16(450), uint16(450), []byte{4, 5, 12, 13, 20, 21, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, n0, n1, n2 uint16, ops []byte) {
		if len(ops) > 400 {
			return
		}
		sizes := []int{int(n0%450) + 1, int(n1%450) + 1, int(n2%450) + 1}
		a, clk := newAssembler(t, func(c *Config) { c.MaxRequestBytes = 1000; c.MaxBytes = 1200 })
		type jobState struct {
			id      string
			chunks  []wire.Chunk
			payload []byte
			final   int
			// switches counts deliveries whose declared (size, count)
			// differs from the previous delivery's: the assembler takes such
			// a chunk, after the job ended, for a new job reusing the ID,
			// which gets its own answer (requesters ignore a second answer
			// for a job ID).
			switches int
			last     [2]int
		}
		jobs := make([]*jobState, 3)
		for i, n := range sizes {
			id := fmt.Sprintf("job-%d", i)
			cs, p := chunksOf(t, id, n, uint64(i+1))
			jobs[i] = &jobState{id: id, chunks: cs, payload: p}
		}
		var held int64 // payload bytes of completed jobs not yet released
		var offset int64
		finish := func(r Result) {
			for _, j := range jobs {
				if j.id != r.JobID {
					continue
				}
				j.final++
				if j.final > 1+j.switches {
					t.Fatalf("job %s has a second final outcome %v (%v)", j.id, r.Outcome, r.Err)
				}
				if r.Outcome == Complete {
					if !bytes.Equal(r.Payload, j.payload) {
						t.Fatalf("job %s completed with a different payload (%d bytes, want %d)", j.id, len(r.Payload), len(j.payload))
					}
					held += int64(len(r.Payload))
				}
			}
		}
		check := func() {
			if h := a.HeldBytes(); h < 0 || h > a.MaxBytes() {
				t.Fatalf("held bytes %d outside [0, %d]", h, a.MaxBytes())
			}
		}
		for i := 0; i < len(ops); i++ {
			op := ops[i]
			j := jobs[int(op>>3)%3]
			idx := 0
			if i+1 < len(ops) {
				i++
				idx = int(ops[i]) % len(j.chunks)
			}
			c := j.chunks[idx]
			switch op % 8 {
			case 0, 1, 2, 3: // a good chunk
			case 4: // one byte changed: the checksum must catch it
				c.Data = append([]byte(nil), c.Data...)
				c.Data[int(op)%len(c.Data)] ^= 0x5a
			case 5: // a different declared size or count (only what ParseChunk lets through)
				if op&0x40 != 0 {
					c.Count++
				} else {
					c.Size += 1 + int(op>>4)
				}
				if c.Validate() != nil {
					continue
				}

			case 6:
				for _, r := range a.Expire(clk.Add(40 * time.Second)) {
					finish(r)
				}
				check()
				continue
			case 7:
				if err := a.Release(held); err != nil {
					t.Fatalf("releasing %d completed bytes: %v", held, err)
				}
				held = 0
				check()
				continue
			}
			if d := [2]int{c.Size, c.Count}; d != j.last {
				if j.last != [2]int{} {
					j.switches++
				}
				j.last = d
			}
			offset++
			r, err := a.Add(context.Background(), c, pos(0, offset))
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			switch r.Outcome {
			case Complete, Rejected:
				finish(r)
			}
			check()
		}
		if err := a.Release(held); err != nil {
			t.Fatalf("releasing %d completed bytes: %v", held, err)
		}
		for _, r := range a.Expire(clk.Add(time.Hour)) {
			finish(r)
		}
		if h, p := a.HeldBytes(), a.PartialJobs(); h != 0 || p != 0 {
			t.Fatalf("after release and expiry: %d bytes held, %d partial jobs", h, p)
		}
	})
}
