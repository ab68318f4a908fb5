package wire_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

// requestRecord is chunk 0 of a one-chunk request with reply topic
// "my.replies", partition 3, as a consumer sees it.
func requestRecord(t *testing.T, id string) (key []byte, headers []*sarama.RecordHeader, value []byte) {
	t.Helper()
	r := wire.NewRequest("GET", "/x")
	r.ID, r.ReplyTopic, r.ReplyPartition = id, "my.replies", 3
	msgs, err := wire.RequestMessages("requests", wire.NoPartition, r, 1<<20)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("RequestMessages: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	value, _ = m.Value.Encode()
	for i := range m.Headers {
		headers = append(headers, &m.Headers[i])
	}
	return []byte(id), headers, value
}

func setHeader(hs []*sarama.RecordHeader, name, value string) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, 0, len(hs))
	for _, h := range hs {
		if string(h.Key) == name {
			out = append(out, &sarama.RecordHeader{Key: h.Key, Value: []byte(value)})
			continue
		}
		out = append(out, h)
	}
	return out
}

// TestChunkHeaderErrorsCarryTheJobAndItsRouting: each header error a portal
// must answer (not only skip) gives the job ID, the error kind, and the
// reply topic and partition the requester listens on.
func TestChunkHeaderErrorsCarryTheJobAndItsRouting(t *testing.T) {
	key, hs, value := requestRecord(t, "job-7")
	size := strconv.Itoa(len(value))
	cases := []struct {
		name    string
		headers []*sarama.RecordHeader
		value   []byte
		kind    wire.ErrorKind
		is      error
	}{
		{"ks-chunks=0", setHeader(hs, wire.HeaderChunks, "0"), value, wire.ErrorMalformed, wire.ErrMalformed},
		{"ks-chunk >= ks-chunks", setHeader(hs, wire.HeaderChunk, "1"), value, wire.ErrorMalformed, wire.ErrMalformed},
		{"single chunk shorter than ks-size", setHeader(hs, wire.HeaderSize, size+"0"), value, wire.ErrorMalformed, wire.ErrMalformed},
		{"single chunk longer than ks-size", hs, append(append([]byte(nil), value...), 'x'), wire.ErrorMalformed, wire.ErrMalformed},
		{"unknown ks-version", setHeader(hs, wire.HeaderVersion, "2"), value, wire.ErrorMalformed, wire.ErrUnsupportedVersion},
		{"ks-chunks over the limit", setHeader(setHeader(hs, wire.HeaderChunks, "9999999"), wire.HeaderChunk, "0"), value, wire.ErrorTooLarge, wire.ErrTooLarge},
		{"missing ks-crc32c", dropHeader(hs, wire.HeaderChecksum), value, wire.ErrorMalformed, wire.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := wire.ParseChunk(key, c.headers, c.value)
			var ce *wire.ChunkError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseChunk error %v (%T) is not a *wire.ChunkError", err, err)
			}
			if ce.JobID != "job-7" || ce.Type != wire.TypeRequest {
				t.Errorf("job %q type %q, want job-7 request", ce.JobID, ce.Type)
			}
			if ce.Kind() != c.kind || wire.KindOf(err) != c.kind || !errors.Is(err, c.is) {
				t.Errorf("kind %q (KindOf %q), want %q; errors.Is(%v) = %v", ce.Kind(), wire.KindOf(err), c.kind, c.is, errors.Is(err, c.is))
			}
			if !ce.RoutingKnown || ce.Routing.ReplyTopic != "my.replies" || ce.Routing.ReplyPartition != 3 {
				t.Errorf("routing %+v known=%v, want my.replies/3", ce.Routing, ce.RoutingKnown)
			}
			var fe *wire.FormatError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Errorf("no *FormatError naming the field inside %v", err)
			}
			// What a portal does with it: an answer the requester can read.
			resp := wire.ErrorResponse(ce.JobID, ce.Kind(), ce.Error())
			if resp.Status != c.kind.Status() || resp.ErrorKind != c.kind || resp.ID != "job-7" {
				t.Errorf("answer %+v", resp)
			}
			if _, err := wire.EncodeResponse(resp); err != nil {
				t.Errorf("the answer does not encode: %v", err)
			}
		})
	}
}

func dropHeader(hs []*sarama.RecordHeader, name string) []*sarama.RecordHeader {
	var out []*sarama.RecordHeader
	for _, h := range hs {
		if string(h.Key) != name {
			out = append(out, h)
		}
	}
	return out
}

// TestChunkErrorWithoutReadableRouting: a later chunk's value holds no
// metadata, so only the job ID is known and the answer goes to the default
// reply topic.
func TestChunkErrorWithoutReadableRouting(t *testing.T) {
	key, hs, _ := requestRecord(t, "job-8")
	hs = setHeader(setHeader(hs, wire.HeaderChunks, "3"), wire.HeaderChunk, "5")
	_, err := wire.ParseChunk(key, hs, []byte("middle of a body"))
	var ce *wire.ChunkError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *wire.ChunkError", err)
	}
	if ce.JobID != "job-8" || ce.RoutingKnown || ce.Routing.ReplyPartition != wire.NoPartition || ce.Routing.ReplyTopic != "" {
		t.Errorf("got %+v, want job-8 with unknown routing", ce)
	}
	// ks-type broken too: the type is unknown, the job ID still readable.
	_, err = wire.ParseChunk(key, setHeader(hs, wire.HeaderType, "query"), nil)
	if !errors.As(err, &ce) || ce.Type != "" || ce.JobID != "job-8" {
		t.Errorf("bad ks-type: %v, %+v", err, ce)
	}
}

// TestRecordsWithoutAJobIDAreNotChunkErrors: no key, nothing to answer.
func TestRecordsWithoutAJobIDAreNotChunkErrors(t *testing.T) {
	_, hs, value := requestRecord(t, "job-9")
	for _, key := range [][]byte{nil, {}, []byte("has space"), {0x80}} {
		_, err := wire.ParseChunk(key, setHeader(hs, wire.HeaderChunks, "0"), value)
		var ce *wire.ChunkError
		if err == nil || errors.As(err, &ce) || !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("key %q: %v (ChunkError %v)", key, err, errors.As(err, &ce))
		}
	}
}

func TestErrorKindStatus(t *testing.T) {
	want := map[wire.ErrorKind]int{
		wire.ErrorNone: 0, wire.ErrorTimeout: 504, wire.ErrorUnreachable: 502, wire.ErrorRejected: 403,
		wire.ErrorTooLarge: 413, wire.ErrorMalformed: 400, wire.ErrorIncomplete: 400, wire.ErrorAuth: 502,
		wire.ErrorInternal: 500, wire.ErrorKind("from_the_future"): 500,
	}
	for k, s := range want {
		if got := k.Status(); got != s {
			t.Errorf("%q.Status() = %d, want %d", k, got, s)
		}
	}
	r := wire.ErrorResponse("j", wire.ErrorNone, "why")
	if r.ErrorKind != wire.ErrorInternal || r.Status != http.StatusInternalServerError {
		t.Errorf("ErrorResponse with no kind: %+v", r)
	}
	// The status survives the wire.
	payload, err := wire.EncodeResponse(wire.ErrorResponse("j", wire.ErrorTooLarge, "request body over 10 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := wire.DecodeResponse(payload)
	if err != nil || back.Status != 413 || back.ErrorKind != wire.ErrorTooLarge {
		t.Errorf("decoded %+v, %v", back, err)
	}
}
