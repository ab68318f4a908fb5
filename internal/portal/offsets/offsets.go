// Package offsets decides which offset the portal may commit per partition
// when messages finish out of order: the lowest offset handed over and not
// yet done, so that a commit never skips a message whose job has not been
// answered.
package offsets

import (
	"errors"
	"fmt"
	"sort"
)

// ErrNotIncreasing means that Track was given an offset not above the last one.
var ErrNotIncreasing = errors.New("offset not above the last tracked one")

// Tracker follows the messages of one partition. Offsets are tracked in
// increasing order, possibly with gaps (compacted records, transaction
// markers); those never tracked are never waited for. It keeps one entry
// per tracked offset not yet passed by the commit point, in a ring, so
// memory follows the outstanding messages, not the offset span. Track,
// Committable and the common case of Done are O(1); Done of an offset
// behind a gap is O(log n). A Tracker is not safe for concurrent use: the
// portal guards each partition's with that partition's lock.
type Tracker struct {
	offs    []int64 // ring of outstanding offsets, increasing from head
	done    []bool  // parallel to offs
	head    int
	n       int
	pending int
	last    int64
	started bool
}

// Track records that the message at offset was handed over.
func (t *Tracker) Track(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("tracking offset %d: negative", offset)
	}
	if t.started && offset <= t.last {
		return fmt.Errorf("tracking offset %d after %d: %w", offset, t.last, ErrNotIncreasing)
	}
	if t.n == len(t.offs) {
		t.grow()
	}
	i := (t.head + t.n) % len(t.offs)
	t.offs[i], t.done[i] = offset, false
	t.n++
	t.pending++
	t.last, t.started = offset, true
	return nil
}

func (t *Tracker) grow() {
	size := max(64, 2*len(t.offs))
	offs, done := make([]int64, size), make([]bool, size)
	for k := range t.n {
		j := (t.head + k) % len(t.offs)
		offs[k], done[k] = t.offs[j], t.done[j]
	}
	t.offs, t.done, t.head = offs, done, 0
}

// at maps the k-th outstanding entry to its ring index.
func (t *Tracker) at(k int) int { return (t.head + k) % len(t.offs) }

// Done records that the message at offset needs nothing more: its job's
// response was acknowledged, or it needed none. It reports false, changing
// nothing, for an offset not tracked or already done.
func (t *Tracker) Done(offset int64) bool {
	if t.n == 0 || offset < t.offs[t.head] || offset > t.last {
		return false
	}
	// Without gaps the entry is offset-first positions from the head; with
	// gaps it is before that.
	k := int(min(offset-t.offs[t.head], int64(t.n-1)))
	if t.offs[t.at(k)] != offset {
		k = sort.Search(k, func(k int) bool { return t.offs[t.at(k)] >= offset })
		if t.offs[t.at(k)] != offset {
			return false
		}
	}
	i := t.at(k)
	if t.done[i] {
		return false
	}
	t.done[i] = true
	t.pending--
	for t.n > 0 && t.done[t.head] {
		t.head = (t.head + 1) % len(t.offs)
		t.n--
	}
	return true
}

// Committable returns the offset to commit: the lowest tracked offset not
// yet done, or the last tracked offset + 1 when all are done. ok is false
// before anything was tracked. It never goes backwards.
func (t *Tracker) Committable() (next int64, ok bool) {
	if !t.started {
		return 0, false
	}
	if t.n == 0 {
		return t.last + 1, true
	}
	return t.offs[t.head], true
}

// Pending is the number of tracked offsets not yet done.
func (t *Tracker) Pending() int { return t.pending }
