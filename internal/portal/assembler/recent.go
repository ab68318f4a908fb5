package assembler

import "kafkasend.io/kafkasend/pkg/wire"

// fingerprint tells a redelivered chunk of a finished job from a chunk of a
// new job that reuses its ID.
type fingerprint struct {
	typ      wire.MessageType
	count    int
	size     int
	checksum uint32
}

func fingerprintOf(c wire.Chunk) fingerprint {
	return fingerprint{typ: c.Type, count: c.Count, size: c.Size, checksum: c.Checksum}
}

// recentSet remembers the last capacity finished job IDs, first in first
// out. It is not safe for concurrent use (its shard's lock guards it).
type recentSet struct {
	byID     map[string]recentEntry
	ring     []ringSlot
	next     int
	seq      uint64
	capacity int
}

type recentEntry struct {
	fp  fingerprint
	seq uint64
}

// ringSlot names the entry it evicts; seq tells whether byID still holds that
// entry or a newer one for the same ID.
type ringSlot struct {
	id  string
	seq uint64
}

func newRecentSet(capacity int) recentSet {
	return recentSet{byID: make(map[string]recentEntry), capacity: capacity}
}

func (r *recentSet) add(id string, fp fingerprint) {
	r.seq++
	slot := ringSlot{id: id, seq: r.seq}
	if len(r.ring) < r.capacity {
		r.ring = append(r.ring, slot)
	} else {
		old := r.ring[r.next]
		if e, ok := r.byID[old.id]; ok && e.seq == old.seq {
			delete(r.byID, old.id)
		}
		r.ring[r.next] = slot
		r.next = (r.next + 1) % r.capacity
	}
	r.byID[id] = recentEntry{fp: fp, seq: r.seq}
}

// matches reports whether c is a chunk of a remembered finished job.
func (r *recentSet) matches(c wire.Chunk) bool {
	e, ok := r.byID[c.JobID]
	return ok && e.fp == fingerprintOf(c)
}

func (r *recentSet) len() int { return len(r.byID) }

// forget drops id; its ring slot then evicts nothing.
func (r *recentSet) forget(id string) { delete(r.byID, id) }
