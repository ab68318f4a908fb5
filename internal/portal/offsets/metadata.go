package offsets

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The commit point of a partition stops at its oldest unanswered message;
// jobs above it may already be answered, and some may be running on a
// worker that owned the partition before (handed over, not cancelled). So a
// commit carries, in the offset commit's metadata string, what the
// partition's next owner needs to neither lose nor repeat work:
//
//   - Done: the offsets above the commit point whose jobs were answered;
//     the next owner skips them.
//   - Leases: the offsets of jobs still running on a named worker until a
//     time; the next owner skips them while the lease lives (the worker
//     renews it and reports completion with control records on the same
//     partition, see docs/protocol.md) and runs them once it lapses.
//
// Encoding "ks2:" + unpadded base64url of:
//
//	uvarint n, then n done ranges
//	uvarint m, then m leases: uvarint len, holder bytes, uvarint expiry
//	  (Unix milliseconds), uvarint k, then k ranges
//
// A list of ranges is relative to the commit point: each range is uvarint
// gap (first - start) and uvarint length (last - first), where start is the
// commit point for the first range of a list and last+1 of the previous
// range after that. "ks1:" (a list of uvarint distances between single
// done offsets, written by earlier versions) is still read.

const (
	metadataPrefixV1 = "ks1:"
	metadataPrefix   = "ks2:"
)

// MaxMetadataBytes bounds the metadata string: brokers refuse commits whose
// metadata is over offset.metadata.max.bytes (default 4096).
const MaxMetadataBytes = 4000

// Decoding limits: a damaged or hostile string cannot make the decoder
// allocate much.
const (
	maxRanges     = 4096
	maxLeases     = 256
	maxHolderLen  = 255
	maxRangeDelta = 1 << 40
)

// ErrForeignMetadata means the metadata was not written by kafkasend (or by
// a version that cannot be read); it is ignored.
var ErrForeignMetadata = errors.New("commit metadata not written by kafkasend")

// Range is an inclusive span of offsets.
type Range struct {
	First, Last int64
}

// Len is the number of offsets in r.
func (r Range) Len() int64 { return r.Last - r.First + 1 }

// Contains reports whether o is in r.
func (r Range) Contains(o int64) bool { return o >= r.First && o <= r.Last }

// Lease says that the jobs at Offsets run on the worker Holder, which will
// answer them, until Expires unless it renews the lease.
type Lease struct {
	Holder  string
	Expires time.Time
	Offsets []Range
}

// Commit is what one commit of a partition records besides its offset.
type Commit struct {
	// Done are the answered offsets above the commit point, increasing and
	// disjoint.
	Done []Range
	// Leases are jobs at or above the commit point still running on a
	// worker that handed the partition over.
	Leases []Lease
}

// DoneCount is the number of offsets in c.Done.
func (c Commit) DoneCount() int64 {
	var n int64
	for _, r := range c.Done {
		n += r.Len()
	}
	return n
}

// LeasedCount is the number of offsets in c.Leases.
func (c Commit) LeasedCount() int64 {
	var n int64
	for _, l := range c.Leases {
		for _, r := range l.Offsets {
			n += r.Len()
		}
	}
	return n
}

// Empty reports whether c records nothing.
func (c Commit) Empty() bool { return len(c.Done) == 0 && len(c.Leases) == 0 }

// Ranges turns increasing offsets into ranges of consecutive ones.
func Ranges(offs []int64) []Range {
	var out []Range
	for _, o := range offs {
		if n := len(out); n > 0 && o == out[n-1].Last+1 {
			out[n-1].Last = o
			continue
		} else if n > 0 && o <= out[n-1].Last {
			continue // not increasing: ignore
		}
		out = append(out, Range{o, o})
	}
	return out
}

// EncodeCommit encodes c for a commit at next into at most MaxMetadataBytes.
// What does not fit is left out, done ranges first (highest first), then
// lease ranges (highest first): a left-out done offset may run again, a
// left-out leased one may run twice. dropped counts the offsets left out.
// Ranges must be above next (leases at or above) and increasing; a range
// that is not is left out too.
func EncodeCommit(next int64, c Commit) (md string, dropped int64) {
	if c.Empty() {
		return "", 0
	}
	budget := base64.RawURLEncoding.DecodedLen(MaxMetadataBytes - len(metadataPrefix))
	finish := func(buf []byte, bad int64) (string, int64) {
		if len(buf) == 0 {
			return "", dropped + bad
		}
		return metadataPrefix + base64.RawURLEncoding.EncodeToString(buf), dropped + bad
	}
	if buf, bad := encodeCommit(next, c.Done, c.Leases); len(buf) <= budget {
		return finish(buf, bad)
	}
	leases := make([]Lease, len(c.Leases))
	copy(leases, c.Leases)
	if buf, _ := encodeCommit(next, nil, leases); len(buf) <= budget {
		// Keep the most done ranges that fit (the lowest ones).
		keep := sort.Search(len(c.Done), func(k int) bool {
			buf, _ := encodeCommit(next, c.Done[:k+1], leases)
			return len(buf) > budget
		})
		for _, r := range c.Done[keep:] {
			dropped += r.Len()
		}
		return finish(encodeCommit(next, c.Done[:keep], leases))
	}
	for _, r := range c.Done {
		dropped += r.Len()
	}
	// Even the leases alone do not fit: leave out the highest lease ranges.
	for {
		buf, bad := encodeCommit(next, nil, leases)
		if len(buf) <= budget {
			return finish(buf, bad)
		}
		hi, hiIdx := int64(-1), -1
		for i, l := range leases {
			if n := len(l.Offsets); n > 0 && l.Offsets[n-1].Last > hi {
				hi, hiIdx = l.Offsets[n-1].Last, i
			}
		}
		if hiIdx < 0 {
			return "", dropped
		}
		l := leases[hiIdx]
		dropped += l.Offsets[len(l.Offsets)-1].Len()
		l.Offsets = l.Offsets[:len(l.Offsets)-1]
		leases[hiIdx] = l
	}
}

// encodeCommit encodes without a size bound; bad counts offsets of ranges
// left out for not being above the commit point or not increasing.
func encodeCommit(next int64, done []Range, leases []Lease) (buf []byte, bad int64) {
	put := func(v uint64) { buf = binary.AppendUvarint(buf, v) }
	// putRanges writes the ranges of rs that start at or after base and
	// increase, each as its gap from the end of the one before (from base
	// for the first) and its length.
	putRanges := func(rs []Range, base int64) {
		ok := make([]Range, 0, len(rs))
		start := base
		for _, r := range rs {
			if r.First < start || r.Last < r.First {
				bad += max(0, r.Len())
				continue
			}
			ok = append(ok, r)
			start = r.Last + 1
		}
		put(uint64(len(ok)))
		start = base
		for _, r := range ok {
			put(uint64(r.First - start))
			put(uint64(r.Last - r.First))
			start = r.Last + 1
		}
	}
	putRanges(done, next+1)
	live := 0
	for _, l := range leases {
		if len(l.Offsets) > 0 {
			live++
		}
	}
	if len(done) == 0 && live == 0 {
		return nil, bad
	}
	put(uint64(live))
	for _, l := range leases {
		if len(l.Offsets) == 0 {
			continue
		}
		h := l.Holder
		if len(h) > maxHolderLen {
			h = h[:maxHolderLen]
		}
		put(uint64(len(h)))
		buf = append(buf, h...)
		put(uint64(max(0, l.Expires.UnixMilli())))
		putRanges(l.Offsets, next)
	}
	return buf, bad
}

// DecodeCommit returns what a commit at next recorded. Empty metadata gives
// an empty Commit; metadata of another writer ErrForeignMetadata; damaged
// metadata an error (callers treat both as empty: at worst answered jobs
// run again).
func DecodeCommit(next int64, md string) (Commit, error) {
	if md == "" {
		return Commit{}, nil
	}
	if rest, ok := strings.CutPrefix(md, metadataPrefixV1); ok {
		return decodeV1(next, rest)
	}
	rest, ok := strings.CutPrefix(md, metadataPrefix)
	if !ok {
		return Commit{}, ErrForeignMetadata
	}
	buf, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Commit{}, fmt.Errorf("commit metadata: %w", err)
	}
	d := decoder{buf: buf}
	var c Commit
	c.Done = d.ranges(next + 1)
	if n := d.count(maxLeases); n > 0 {
		c.Leases = make([]Lease, 0, n)
		for range n {
			hl := d.count(maxHolderLen)
			holder := d.bytes(hl)
			exp := d.uvarint(1 << 53)
			offs := d.ranges(next)
			if d.err != nil {
				break
			}
			c.Leases = append(c.Leases, Lease{Holder: string(holder), Expires: time.UnixMilli(int64(exp)), Offsets: offs})
		}
	}
	if d.err == nil && len(d.buf) > 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return Commit{}, fmt.Errorf("commit metadata: %w", d.err)
	}
	return c, nil
}

func decodeV1(next int64, rest string) (Commit, error) {
	buf, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Commit{}, fmt.Errorf("commit metadata: %w", err)
	}
	var offs []int64
	prev := next
	for len(buf) > 0 {
		v, n := binary.Uvarint(buf)
		if n <= 0 || v == 0 || v > maxRangeDelta {
			return Commit{}, errors.New("commit metadata: bad ks1 delta")
		}
		buf = buf[n:]
		prev += int64(v)
		offs = append(offs, prev)
	}
	return Commit{Done: Ranges(offs)}, nil
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errors.New("truncated")
		return 0
	}
	if v > limit {
		d.err = fmt.Errorf("value %d over %d", v, limit)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) count(limit int) int { return int(d.uvarint(uint64(limit))) }

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.buf) {
		d.err = errors.New("truncated")
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) ranges(start int64) []Range {
	n := d.count(maxRanges)
	if n == 0 || d.err != nil {
		return nil
	}
	out := make([]Range, 0, n)
	for range n {
		gap := int64(d.uvarint(maxRangeDelta))
		length := int64(d.uvarint(maxRangeDelta))
		if d.err != nil {
			return nil
		}
		first := start + gap
		out = append(out, Range{First: first, Last: first + length})
		start = first + length + 1
	}
	return out
}

// DoneRanges returns, in increasing order, the tracked offsets above the
// commit point that are done, as ranges of offsets tracked one after the
// other, at most limit ranges (the lowest ones). Offsets never tracked
// between two done ones (compacted records, transaction markers) fall
// inside a range: they hold no job.
func (t *Tracker) DoneRanges(limit int) []Range {
	var out []Range
	open := false
	for k := 0; k < t.n; k++ {
		i := t.at(k)
		if !t.done[i] {
			open = false
			continue
		}
		if open {
			out[len(out)-1].Last = t.offs[i]
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, Range{t.offs[i], t.offs[i]})
		open = true
	}
	return out
}
