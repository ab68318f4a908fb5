package wire

import (
	"github.com/IBM/sarama"
)

// ChunkError is the error ParseChunk returns for a record whose key is a
// valid job ID but whose headers or value break the format. The job can be
// answered: ErrorResponse(e.JobID, e.Kind(), e.Error()) to e.Routing (or to
// the default reply topic when e.RoutingKnown is false).
//
// It unwraps to the *FormatError that says what is wrong, so errors.Is with
// ErrMalformed, ErrTooLarge, ErrUnsupportedVersion and KindOf work on it as
// on any error of this package.
type ChunkError struct {
	// JobID is the record key.
	JobID string
	// Type is the record's ks-type when it was valid, else empty. A portal
	// answers only requests; a response chunk on its requests topic is
	// skipped like any record it cannot answer.
	Type MessageType
	// Routing is the reply topic and partition read from the value with
	// PeekRouting, valid when RoutingKnown is true (the value starts with a
	// request payload whose whole metadata it holds, as chunk 0 of a job
	// does). ReplyTopic is empty when the requester named none.
	Routing Routing
	// RoutingKnown reports whether Routing was read from the value.
	RoutingKnown bool
	// Err is the precise error, a *FormatError.
	Err error
}

// Error implements error; it names the job.
func (e *ChunkError) Error() string { return e.Err.Error() + " (job " + e.JobID + ")" }

// Unwrap returns the precise error.
func (e *ChunkError) Unwrap() error { return e.Err }

// Kind is the error kind the job is answered with: KindOf(e.Err)
// (malformed, or too_large for a declared size or chunk count over the
// format's limits).
func (e *ChunkError) Kind() ErrorKind { return KindOf(e.Err) }

// newChunkError wraps err with what can still be read of the record.
func newChunkError(key []byte, headers []*sarama.RecordHeader, value []byte, err error) *ChunkError {
	ce := &ChunkError{JobID: string(key), Routing: Routing{ReplyPartition: NoPartition}, Err: err}
	ce.Type = headerType(headers)
	if r, ok := PeekRouting(value); ok {
		ce.Routing, ce.RoutingKnown = r, true
	}
	return ce
}

// headerType is the value of the only ks-type header when it is valid, else
// empty.
func headerType(headers []*sarama.RecordHeader) MessageType {
	var t MessageType
	n := 0
	for _, h := range headers {
		if h == nil || string(h.Key) != HeaderType {
			continue
		}
		n++
		switch string(h.Value) {
		case string(TypeRequest):
			t = TypeRequest
		case string(TypeResponse):
			t = TypeResponse
		default:
			return ""
		}
	}
	if n != 1 {
		return ""
	}
	return t
}
