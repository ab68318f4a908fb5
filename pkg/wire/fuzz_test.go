package wire

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/IBM/sarama"
)

// FuzzDecodeRequest checks that no payload makes DecodeRequest panic, that
// every error is a format error a portal can map to an error kind, and that
// whatever decodes re-encodes to a payload that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	golden, _ := EncodeRequest(goldenRequest())
	f.Add(golden)
	f.Add(payloadWithMeta(payloadTypeRequest, `{"method":"GET","path":"/","headers":{"a":["1","2"],"A":null},"replyPartition":0}`, []byte{0, 255}))
	f.Add(payloadWithMeta(payloadTypeRequest, `{"method":"GET","deadlineMs":9223372036854775807}`, nil))
	f.Add(payloadWithMeta(payloadTypeResponse, `{"status":200}`, nil))
	f.Add([]byte("KS\x01\x01\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := DecodeRequest(payload)
		if err != nil {
			if k := KindOf(err); k != ErrorMalformed && k != ErrorTooLarge {
				t.Fatalf("error %v maps to kind %q", err, k)
			}
			if r != nil {
				t.Fatalf("request returned with error %v", err)
			}
			return
		}
		again, err := EncodeRequest(r)
		if err != nil {
			t.Fatalf("decoded request %+v does not re-encode: %v", r, err)
		}
		r2, err := DecodeRequest(again)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if r.Method != r2.Method || r.Path != r2.Path || r.RawQuery != r2.RawQuery || r.ReplyTopic != r2.ReplyTopic ||
			r.ReplyPartition != r2.ReplyPartition || !r.Deadline.Equal(r2.Deadline) || r.Traceparent != r2.Traceparent ||
			!bytes.Equal(r.Body, r2.Body) || !headersEqual(r.Header, r2.Header) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", r, r2)
		}
	})
}

func headersEqual(a, b http.Header) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// FuzzParseChunk checks that no record makes ParseChunk panic and that an
// accepted chunk's data lies within its declared payload.
func FuzzParseChunk(f *testing.F) {
	f.Add([]byte("job-1"), "1", "request", "0", "3", "250", "0000abcd", 100)
	f.Add([]byte("j"), "1", "response", "2", "3", "250", "1", 50)
	f.Add([]byte(nil), "", "", "", "", "", "", 0)
	f.Fuzz(func(t *testing.T, key []byte, version, typ, index, count, size, crc string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		hs := []*sarama.RecordHeader{
			{Key: []byte(HeaderVersion), Value: []byte(version)}, {Key: []byte(HeaderType), Value: []byte(typ)},
			{Key: []byte(HeaderChunk), Value: []byte(index)}, {Key: []byte(HeaderChunks), Value: []byte(count)},
			{Key: []byte(HeaderSize), Value: []byte(size)}, {Key: []byte(HeaderChecksum), Value: []byte(crc)},
		}
		c, err := ParseChunk(key, hs, make([]byte, n))
		if err != nil {
			if KindOf(err) == ErrorInternal {
				t.Fatalf("unmapped error %v", err)
			}
			// A valid key always yields a ChunkError naming the job, so
			// that the portal can answer it.
			var ce *ChunkError
			if keyErr := ValidateJobID(string(key)); keyErr == nil && key != nil {
				if !errors.As(err, &ce) || ce.JobID != string(key) || ce.Kind() != KindOf(err) {
					t.Fatalf("error %v for valid key %q is not a ChunkError of that job", err, key)
				}
			} else if errors.As(err, &ce) {
				t.Fatalf("ChunkError %v for invalid key %q", err, key)
			}
			return
		}
		if c.Index < 0 || c.Index >= c.Count || c.Offset() < 0 || c.Offset()+len(c.Data) > c.Size {
			t.Fatalf("accepted chunk outside its payload: %+v (offset %d)", c, c.Offset())
		}
	})
}

// FuzzDecodeResponse checks that no payload makes DecodeResponse panic, that
// every error maps to an error kind, and that whatever decodes re-encodes to
// a payload that decodes to the same response.
func FuzzDecodeResponse(f *testing.F) {
	ok, _ := EncodeResponse(&Response{ID: "j", Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hello")})
	f.Add(ok)
	errResp, _ := EncodeResponse(ErrorResponse("j", ErrorTimeout, "no answer within 15m0s"))
	f.Add(errResp)
	f.Add(payloadWithMeta(payloadTypeResponse, `{"status":999,"headers":{"a":["1"],"A":["2"]}}`, []byte{0}))
	f.Add(payloadWithMeta(payloadTypeResponse, `{"errorKind":"from_the_future","errorMessage":"x"}`, nil))
	f.Add(payloadWithMeta(payloadTypeRequest, `{"method":"GET"}`, nil))
	f.Add([]byte("KS\x01\x02\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := DecodeResponse(payload)
		if err != nil {
			if k := KindOf(err); k != ErrorMalformed && k != ErrorTooLarge {
				t.Fatalf("error %v maps to kind %q", err, k)
			}
			if r != nil {
				t.Fatalf("response returned with error %v", err)
			}
			return
		}
		again, err := EncodeResponse(r)
		if err != nil {
			t.Fatalf("decoded response %+v does not re-encode: %v", r, err)
		}
		r2, err := DecodeResponse(again)
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v", err)
		}
		if r.Status != r2.Status || r.ErrorKind != r2.ErrorKind || r.ErrorMessage != r2.ErrorMessage ||
			!bytes.Equal(r.Body, r2.Body) || !headersEqual(r.Header, r2.Header) {
			t.Fatalf("round trip changed the response:\n%+v\n%+v", r, r2)
		}
	})
}

// FuzzPeekRouting checks that PeekRouting never panics and agrees with
// DecodeRequest on every payload that decodes.
func FuzzPeekRouting(f *testing.F) {
	golden, _ := EncodeRequest(goldenRequest())
	f.Add(golden)
	f.Add(payloadWithMeta(payloadTypeRequest, `{"method":"GET","replyTopic":"r","replyPartition":-1}`, nil))
	f.Add(payloadWithMeta(payloadTypeRequest, `{"method":"GET","replyPartition":-2}`, nil))
	f.Add(golden[:20])
	f.Fuzz(func(t *testing.T, payload []byte) {
		route, ok := PeekRouting(payload)
		r, err := DecodeRequest(payload)
		if err != nil {
			return
		}
		if !ok || route.ReplyTopic != r.ReplyTopic || route.ReplyPartition != r.ReplyPartition {
			t.Fatalf("PeekRouting %+v ok=%v, DecodeRequest says %q/%d", route, ok, r.ReplyTopic, r.ReplyPartition)
		}
	})
}
