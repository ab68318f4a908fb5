package offsets

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// The commit point of a partition stops at its oldest unanswered message;
// jobs above it may already be answered. Committing only the offset would
// make a partition's next owner (after a crash) run those jobs again. So a
// commit carries, in the offset commit's metadata string, the offsets above
// the commit point that are done; the next owner skips them.
//
// Encoding: "ks1:" followed by unpadded base64url of unsigned varints, each
// the distance from the previous offset (the first from the commit point).

const metadataPrefix = "ks1:"

// MaxMetadataBytes bounds the metadata string: brokers refuse commits whose
// metadata is over offset.metadata.max.bytes (default 4096).
const MaxMetadataBytes = 4000

// DoneAbove returns, in increasing order, the tracked offsets above the
// commit point that are done, at most limit of them (the lowest ones).
func (t *Tracker) DoneAbove(limit int) []int64 {
	var out []int64
	for k := 0; k < t.n && len(out) < limit; k++ {
		if i := t.at(k); t.done[i] {
			out = append(out, t.offs[i])
		}
	}
	return out
}

// EncodeMetadata encodes the done offsets above next (increasing, each >
// next) into at most MaxMetadataBytes; offsets that do not fit are left out,
// which only means they may run again.
func EncodeMetadata(next int64, done []int64) string {
	if len(done) == 0 {
		return ""
	}
	budget := base64.RawURLEncoding.DecodedLen(MaxMetadataBytes - len(metadataPrefix))
	buf := make([]byte, 0, min(budget, len(done)*2))
	prev := next
	for _, o := range done {
		if o <= prev {
			break // not increasing: stop rather than encode nonsense
		}
		var tmp [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(tmp[:], uint64(o-prev))
		if len(buf)+n > budget {
			break
		}
		buf = append(buf, tmp[:n]...)
		prev = o
	}
	if len(buf) == 0 {
		return ""
	}
	return metadataPrefix + base64.RawURLEncoding.EncodeToString(buf)
}

// DecodeMetadata returns the done offsets a commit at next recorded; nil for
// metadata that is empty, of another writer, or damaged.
func DecodeMetadata(next int64, md string) []int64 {
	rest, ok := strings.CutPrefix(md, metadataPrefix)
	if !ok {
		return nil
	}
	buf, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil
	}
	var out []int64
	prev := next
	for len(buf) > 0 {
		d, n := binary.Uvarint(buf)
		if n <= 0 || d == 0 || d > 1<<40 {
			return nil
		}
		buf = buf[n:]
		prev += int64(d)
		out = append(out, prev)
	}
	return out
}

// CommitState returns the offset to commit for tp and the metadata listing
// the done offsets above it, in one consistent snapshot.
func (m *Manager) CommitState(tp TopicPartition) (next int64, metadata string, ok bool) {
	p := m.get(tp)
	if p == nil {
		return 0, "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next, ok = p.t.Committable()
	if !ok {
		return 0, "", false
	}
	return next, EncodeMetadata(next, p.t.DoneAbove(MaxMetadataBytes)), true
}

// DoneAll marks several offsets of tp done at once, so that no commit
// snapshot sees some of them done and not the others (the chunks of one
// job are answered together). It returns how many were newly done.
func (m *Manager) DoneAll(tp TopicPartition, offsets []int64) int {
	p := m.get(tp)
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, o := range offsets {
		if p.t.Done(o) {
			n++
		}
	}
	return n
}
