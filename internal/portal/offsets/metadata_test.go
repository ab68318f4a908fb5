package offsets

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCommitListsAnsweredOffsetsAboveTheCommitPoint(t *testing.T) {
	var tr Tracker
	for _, o := range []int64{10, 11, 12, 15, 16, 40} {
		if err := tr.Track(o); err != nil {
			t.Fatal(err)
		}
	}
	// 10 (a slow job) is unanswered; the others are answered.
	for _, o := range []int64{12, 16, 40, 11, 15} {
		tr.Done(o)
	}
	next, ok := tr.Committable()
	if !ok || next != 10 {
		t.Fatalf("commit point %d, %v", next, ok)
	}
	md, _ := EncodeCommit(next, Commit{Done: tr.DoneRanges(maxRanges)})
	got, err := DecodeCommit(next, md)
	if err != nil {
		t.Fatal(err)
	}
	// 13, 14 and 17-39 were never tracked (compacted, say): they fall
	// inside the range and hold no job.
	if want := []Range{{11, 40}}; !reflect.DeepEqual(got.Done, want) {
		t.Fatalf("metadata %q decodes to %v, want %v", md, got.Done, want)
	}
	// Once 10 is answered everything is committed and nothing is listed.
	tr.Done(10)
	next, _ = tr.Committable()
	if md, _ := EncodeCommit(next, Commit{Done: tr.DoneRanges(maxRanges)}); next != 41 || md != "" {
		t.Errorf("after all done: %d %q", next, md)
	}
}

func TestCommitRoundTripWithLeases(t *testing.T) {
	exp := time.UnixMilli(1_900_000_000_123)
	c := Commit{
		Done: []Range{{101, 101}, {103, 18_000}, {20_000, 20_010}},
		Leases: []Lease{
			{Holder: "portal-7d9f-abcde", Expires: exp, Offsets: []Range{{100, 100}, {102, 102}}},
			{Holder: "portal-7d9f-xyz", Expires: exp.Add(time.Second), Offsets: []Range{{19_000, 19_003}}},
		},
	}
	md, dropped := EncodeCommit(100, c)
	if dropped != 0 || !strings.HasPrefix(md, "ks2:") {
		t.Fatalf("EncodeCommit = %q, dropped %d", md, dropped)
	}
	got, err := DecodeCommit(100, md)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Leases {
		if !got.Leases[i].Expires.Equal(c.Leases[i].Expires) {
			t.Errorf("lease %d expires %v, want %v", i, got.Leases[i].Expires, c.Leases[i].Expires)
		}
		got.Leases[i].Expires = c.Leases[i].Expires
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if got.DoneCount() != 1+17_898+11 || got.LeasedCount() != 6 {
		t.Errorf("counts %d %d", got.DoneCount(), got.LeasedCount())
	}
}

// One 15-minute call below 18,000 answered fast jobs (20 jobs/s) is one
// range: it fits, where a list of single offsets did not.
func TestLongCallBelowManyAnsweredJobsFits(t *testing.T) {
	var tr Tracker
	for o := int64(0); o <= 18_000; o++ {
		if err := tr.Track(o); err != nil {
			t.Fatal(err)
		}
	}
	for o := int64(1); o <= 18_000; o++ {
		tr.Done(o)
	}
	next, _ := tr.Committable()
	md, dropped := EncodeCommit(next, Commit{Done: tr.DoneRanges(maxRanges)})
	if dropped != 0 || len(md) > 20 {
		t.Fatalf("metadata %q (%d bytes), dropped %d", md, len(md), dropped)
	}
	got, _ := DecodeCommit(next, md)
	if got.DoneCount() != 18_000 {
		t.Errorf("decoded %d answered offsets", got.DoneCount())
	}
}

func TestEncodeCommitStaysWithinTheBrokerLimit(t *testing.T) {
	var c Commit
	for i := int64(1); i <= 5000; i++ {
		c.Done = append(c.Done, Range{i * 1000, i*1000 + 1}) // apart: many bytes
	}
	var leased []Range
	for i := int64(0); i < 300; i++ {
		leased = append(leased, Range{10_000_000 + i*7, 10_000_000 + i*7})
	}
	c.Leases = []Lease{{Holder: strings.Repeat("h", 300), Expires: time.Now(), Offsets: leased}}
	md, dropped := EncodeCommit(5, c)
	if len(md) > MaxMetadataBytes || dropped == 0 {
		t.Fatalf("metadata of %d bytes, dropped %d", len(md), dropped)
	}
	got, err := DecodeCommit(5, md)
	if err != nil {
		t.Fatal(err)
	}
	// Leases are kept before done ranges: a dropped lease runs a live job twice.
	if len(got.Leases) != 1 || len(got.Leases[0].Offsets) != len(leased) {
		t.Errorf("leases not kept whole: %+v", got.Leases)
	}
	if len(got.Leases[0].Holder) != maxHolderLen {
		t.Errorf("holder of %d bytes", len(got.Leases[0].Holder))
	}
	if len(got.Done) == 0 || !reflect.DeepEqual(got.Done, c.Done[:len(got.Done)]) {
		t.Errorf("done ranges kept are not the lowest ones: %d kept, first %v", len(got.Done), got.Done[:min(3, len(got.Done))])
	}
	if int64(len(c.Done)-len(got.Done))*2 != dropped {
		t.Errorf("dropped %d, but %d ranges of 2 left out", dropped, len(c.Done)-len(got.Done))
	}
}

func TestEncodeCommitLeavesOutRangesBelowTheCommitPoint(t *testing.T) {
	md, dropped := EncodeCommit(50, Commit{Done: []Range{{40, 45}, {50, 50}, {60, 61}}})
	got, _ := DecodeCommit(50, md)
	if dropped != 7 || !reflect.DeepEqual(got.Done, []Range{{60, 61}}) {
		t.Errorf("got %v dropped %d", got.Done, dropped)
	}
	// A lease may include the commit point itself.
	md, _ = EncodeCommit(50, Commit{Leases: []Lease{{Holder: "a", Offsets: []Range{{50, 50}}}}})
	if got, _ := DecodeCommit(50, md); got.LeasedCount() != 1 || got.Leases[0].Offsets[0].First != 50 {
		t.Errorf("lease at the commit point lost: %+v", got)
	}
}

func TestDecodeCommitReadsVersion1(t *testing.T) {
	// ks1: distances 1, 1, 3 from 10 -> 11, 12, 15.
	got, err := DecodeCommit(10, "ks1:AQED")
	if err != nil || !reflect.DeepEqual(got.Done, []Range{{11, 12}, {15, 15}}) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestDecodeCommitRefusesDamage(t *testing.T) {
	if c, err := DecodeCommit(5, ""); err != nil || !c.Empty() {
		t.Errorf("empty metadata: %v %v", c, err)
	}
	if _, err := DecodeCommit(5, "other-writer"); !errors.Is(err, ErrForeignMetadata) {
		t.Errorf("foreign metadata: %v", err)
	}
	good, _ := EncodeCommit(5, Commit{Done: []Range{{7, 9}}, Leases: []Lease{{Holder: "w", Offsets: []Range{{6, 6}}}}})
	for _, bad := range []string{"ks2:!!!", "ks2:_w", "ks1:AA", good[:len(good)-2], good + "AA", "ks2:" + strings.Repeat("_", 40)} {
		if c, err := DecodeCommit(5, bad); err == nil {
			t.Errorf("DecodeCommit(%q) = %+v, want an error", bad, c)
		}
	}
}

func TestRanges(t *testing.T) {
	got := Ranges([]int64{1, 2, 3, 5, 7, 8, 8, 4})
	if want := []Range{{1, 3}, {5, 5}, {7, 8}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Ranges = %v, want %v", got, want)
	}
}

// The example of docs/protocol.md §11, byte for byte.
func TestCommitMetadataDocExample(t *testing.T) {
	md, _ := EncodeCommit(100, Commit{
		Done:   []Range{{101, 101}, {103, 104}},
		Leases: []Lease{{Holder: "portal-7d9f-x.1a2b3c4d", Expires: time.UnixMilli(1764633600000), Offsets: []Range{{100, 100}, {102, 102}}}},
	})
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(md, "ks2:"))
	if err != nil {
		t.Fatal(err)
	}
	want := "0200000101" + "0116" + hex.EncodeToString([]byte("portal-7d9f-x.1a2b3c4d")) + "80c0efe2ad33" + "0200000100"
	if got := hex.EncodeToString(raw); got != want {
		t.Errorf("bytes %s\nwant  %s", got, want)
	}
}
