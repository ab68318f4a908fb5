package offsets

import (
	"slices"
	"testing"
	"time"
)

// FuzzDecodeCommit checks that no commit metadata makes DecodeCommit panic,
// that what decodes is well-formed (done ranges above the commit point,
// lease ranges at or above it, all increasing and disjoint), and that it
// re-encodes to metadata that decodes to the same commit.
func FuzzDecodeCommit(f *testing.F) {
	seed := func(next int64, c Commit) {
		md, _ := EncodeCommit(next, c)
		f.Add(next, md)
	}
	seed(0, Commit{})
	seed(10, Commit{Done: []Range{{12, 12}, {14, 20}}})
	seed(100, Commit{Done: []Range{{101, 101}}, Leases: []Lease{
		{Holder: "portal-7f9c-abcde", Expires: time.UnixMilli(1767323045000), Offsets: []Range{{100, 100}, {103, 105}}},
		{Holder: "b", Expires: time.UnixMilli(1), Offsets: []Range{{200, 200}}},
	}})
	f.Add(int64(5), "ks1:AQI")
	f.Add(int64(5), "ks2:")
	f.Add(int64(-1), "ks2:AAA")
	f.Add(int64(0), "something else")
	f.Fuzz(func(t *testing.T, next int64, md string) {
		if next < 0 || next > 1<<50 {
			return // Kafka offsets
		}
		c, err := DecodeCommit(next, md)
		if err != nil {
			if !c.Empty() {
				t.Fatalf("error %v with a non-empty commit %+v", err, c)
			}
			return
		}
		checkRanges(t, "done", c.Done, next+1)
		for _, l := range c.Leases {
			checkRanges(t, "lease "+l.Holder, l.Offsets, next)
		}
		again, dropped := EncodeCommit(next, c)
		if dropped != 0 {
			// What decodes fits: DecodeCommit reads at most MaxMetadataBytes.
			if len(md) <= MaxMetadataBytes {
				t.Fatalf("re-encoding %q dropped %d offsets", md, dropped)
			}
			return
		}
		c2, err := DecodeCommit(next, again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		// A lease of no offsets means nothing; the encoder leaves it out.
		c.Leases = slices.DeleteFunc(c.Leases, func(l Lease) bool { return len(l.Offsets) == 0 })
		if c.DoneCount() != c2.DoneCount() || c.LeasedCount() != c2.LeasedCount() || len(c.Leases) != len(c2.Leases) {
			t.Fatalf("round trip changed the commit:\n%+v\n%+v", c, c2)
		}
		for i := range c.Done {
			if c.Done[i] != c2.Done[i] {
				t.Fatalf("done range %d: %+v then %+v", i, c.Done[i], c2.Done[i])
			}
		}
		for i := range c.Leases {
			if c.Leases[i].Holder != c2.Leases[i].Holder || !c.Leases[i].Expires.Equal(c2.Leases[i].Expires) {
				t.Fatalf("lease %d: %+v then %+v", i, c.Leases[i], c2.Leases[i])
			}
		}
	})
}

func checkRanges(t *testing.T, what string, rs []Range, low int64) {
	t.Helper()
	prev := low - 1
	for _, r := range rs {
		// Touching ranges ({1,5},{6,9}) are allowed: the same set, unmerged.
		if r.First < low || r.Last < r.First || r.First <= prev {
			t.Fatalf("%s ranges %+v: %+v is below %d, empty, or overlaps the one before", what, rs, r, low)
		}
		prev = r.Last
	}
}
