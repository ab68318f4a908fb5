package offsets

import (
	"slices"
	"testing"
)

func TestCommitStateListsAnsweredOffsetsAboveTheCommitPoint(t *testing.T) {
	m := NewManager()
	tp := TopicPartition{Topic: "req", Partition: 2}
	for _, o := range []int64{10, 11, 12, 15, 16, 40} {
		if err := m.Track(tp, o); err != nil {
			t.Fatal(err)
		}
	}
	// 10 (a slow job) is unanswered; 12, 16 and 40 are answered; 11 and 15
	// belong to a job answered at once, together.
	m.Done(tp, 12)
	m.Done(tp, 16)
	m.Done(tp, 40)
	if n := m.DoneAll(tp, []int64{11, 15}); n != 2 {
		t.Fatalf("DoneAll marked %d", n)
	}
	next, md, ok := m.CommitState(tp)
	if !ok || next != 10 {
		t.Fatalf("commit point %d, %v", next, ok)
	}
	got := DecodeMetadata(next, md)
	if want := []int64{11, 12, 15, 16, 40}; !slices.Equal(got, want) {
		t.Fatalf("metadata %q decodes to %v, want %v", md, got, want)
	}
	// Once 10 is answered everything is committed and nothing is listed.
	m.Done(tp, 10)
	if next, md, _ := m.CommitState(tp); next != 41 || md != "" {
		t.Errorf("after all done: %d %q", next, md)
	}
}

func TestMetadataIsBoundedAndRobust(t *testing.T) {
	var done []int64
	for i := int64(1); i <= 100000; i++ {
		done = append(done, 1000+i*1000) // far apart: 2-byte varints
	}
	md := EncodeMetadata(1000, done)
	if len(md) > MaxMetadataBytes {
		t.Fatalf("metadata of %d bytes", len(md))
	}
	got := DecodeMetadata(1000, md)
	if len(got) == 0 || !slices.Equal(got, done[:len(got)]) {
		t.Fatalf("decoded %d offsets, not a prefix of the encoded ones", len(got))
	}
	for _, bad := range []string{"", "other-writer", "ks1:!!!", "ks1:AA"} {
		if got := DecodeMetadata(5, bad); got != nil {
			t.Errorf("DecodeMetadata(%q) = %v, want nil", bad, got)
		}
	}
}
