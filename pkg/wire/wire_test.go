package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// goldenRequest is the worked example of docs/protocol.md.
func goldenRequest() *Request {
	return &Request{
		ID: "job-42", Method: "POST", Path: "/v1/echo", RawQuery: "lang=en",
		Header:     http.Header{"Content-Type": {"text/plain"}},
		Body:       []byte("hello"),
		ReplyTopic: "replies", ReplyPartition: NoPartition,
		Deadline:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// goldenValueHex is the record value of the worked example, as printed in
// docs/protocol.md.
const goldenValueHex = "" +
	"4b530101000000d9" + // "KS", version 1, type 1 (request), metadata length 217
	`7b226d6574686f64223a22504f5354222c2270617468223a222f76312f6563686f222c` +
	`227175657279223a226c616e673d656e222c2268656164657273223a7b22436f6e74656e` +
	`742d54797065223a5b22746578742f706c61696e225d7d2c227265706c79546f70696322` +
	`3a227265706c696573222c22646561646c696e654d73223a313736373332333034353030` +
	`302c227472616365706172656e74223a2230302d34626639326633353737623334646136` +
	`613363653932396430653065343733362d303066303637616130626139303262372d3031` +
	`227d` +
	"68656c6c6f" // body "hello"

const goldenMeta = `{"method":"POST","path":"/v1/echo","query":"lang=en","headers":{"Content-Type":["text/plain"]},` +
	`"replyTopic":"replies","deadlineMs":1767323045000,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`

func TestGoldenExampleMatchesDoc(t *testing.T) {
	want, err := hex.DecodeString(goldenValueHex)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncodeRequest(goldenRequest())
	if err != nil {
		t.Fatalf("EncodeRequest: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("payload differs from the documented one:\n got %x\nwant %x", got, want)
	}
	if meta := string(got[PrefixSize : len(got)-len("hello")]); meta != goldenMeta {
		t.Errorf("metadata %s, documented %s", meta, goldenMeta)
	}
	chunks, err := Split("job-42", TypeRequest, got, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(chunks))
	}
	var hs []string
	for _, h := range ChunkHeaders(chunks[0]) {
		hs = append(hs, string(h.Key)+"="+string(h.Value))
	}
	wantHeaders := []string{"ks-version=1", "ks-type=request", "ks-chunk=0", "ks-chunks=1", "ks-size=230", "ks-crc32c=86444bf6"}
	if !reflect.DeepEqual(hs, wantHeaders) {
		t.Errorf("headers %q, documented %q", hs, wantHeaders)
	}
	// And the documented bytes decode back to the request.
	dec, err := DecodeRequest(want)
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	dec.ID = "job-42"
	assertRequestsEqual(t, dec, goldenRequest())
}

func TestChecksumIsCRC32C(t *testing.T) {
	// Standard check value of CRC-32C (RFC 3720 appendix B.4 uses the same
	// polynomial): CRC-32C("123456789") = e3069283.
	if got := ChecksumOf([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("ChecksumOf = %08x, want e3069283", got)
	}
	if err := VerifyChecksum([]byte("123456789"), 0xe3069283); err != nil {
		t.Fatalf("VerifyChecksum: %v", err)
	}
	err := VerifyChecksum([]byte("123456780"), 0xe3069283)
	if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("VerifyChecksum of changed bytes = %v, want ErrChecksum", err)
	}
}

func allBytes() []byte {
	b := make([]byte, 256*3)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func bigBody(n int) []byte {
	b := make([]byte, n)
	var x uint32 = 2463534242
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestRequestRoundTrip(t *testing.T) {
	deadline := time.Date(2030, 5, 6, 7, 8, 9, 123e6, time.UTC)
	cases := []struct {
		name   string
		req    Request
		maxMsg int
		chunks int // expected chunk count, 0 = don't check
	}{
		{name: "empty body, minimal", req: Request{ID: "a", Method: "GET", ReplyPartition: NoPartition}, maxMsg: 1024, chunks: 1},
		{name: "binary body with every byte value", req: Request{ID: "bin", Method: "PUT", Path: "/b", Body: allBytes(), ReplyPartition: NoPartition}, maxMsg: 1 << 20, chunks: 1},
		{name: "binary body over many chunks", req: Request{ID: "bin-many", Method: "PUT", Path: "/b", Body: allBytes(), ReplyPartition: NoPartition}, maxMsg: 500, chunks: 0},
		{name: "large body", req: Request{ID: NewJobID(), Method: "POST", Path: "/upload", Body: bigBody(3<<20 + 17), ReplyPartition: NoPartition}, maxMsg: 64 << 10, chunks: 49},
		{name: "multi-valued headers", req: Request{
			ID: "h", Method: "GET", Path: "/x",
			Header:         http.Header{"Accept": {"text/html", "application/json"}, "X-Empty": {""}, "Cookie": {"a=1", "b=2", "c=3"}},
			ReplyPartition: NoPartition,
		}, maxMsg: 1024},
		{name: "deadline, reply partition, topic, query, traceparent", req: Request{
			ID: "full", Method: "PATCH", Path: "/v2/items/7", RawQuery: "a=1&b=%20x&b=2",
			ReplyTopic: "team.replies-v2", ReplyPartition: 11, Deadline: deadline,
			Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			Body:        []byte(`{"name":"<x> & 'y'"}`),
		}, maxMsg: 1024},
		{name: "reply partition 0", req: Request{ID: "p0", Method: "DELETE", Path: "/x", ReplyPartition: 0}, maxMsg: 1024},
		{name: "unicode in path and headers", req: Request{
			ID: "u", Method: "GET", Path: "/caf\u00e9/\u65e5\u672c", Header: http.Header{"X-Name": {"Zo\u00eb \u2028"}}, ReplyPartition: NoPartition,
		}, maxMsg: 1024},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := roundTripRequest(t, &tc.req, tc.maxMsg, tc.chunks)
			assertRequestsEqual(t, got, &tc.req)
		})
	}
}

// roundTripRequest encodes, splits, renders as Kafka records, parses the
// records and decodes, as a requester and a portal would.
func roundTripRequest(t *testing.T, r *Request, maxMsg, wantChunks int) *Request {
	t.Helper()
	msgs, err := RequestMessages("requests", NoPartition, r, maxMsg)
	if err != nil {
		t.Fatalf("RequestMessages: %v", err)
	}
	if wantChunks > 0 && len(msgs) != wantChunks {
		t.Fatalf("%d chunks, want %d", len(msgs), wantChunks)
	}
	chunks := make([]Chunk, len(msgs))
	for i, m := range msgs {
		if size := m.ByteSize(2) + kafkaBatchHeader; size > maxMsg {
			t.Fatalf("record %d takes %d bytes in a batch, over the limit of %d", i, size, maxMsg)
		}
		key, value := encoded(t, m.Key), encoded(t, m.Value)
		c, err := ParseChunk(key, consumerHeaders(m.Headers), value)
		if err != nil {
			t.Fatalf("ParseChunk %d: %v", i, err)
		}
		chunks[i] = c
	}
	payload, err := Join(chunks)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	typ, err := PayloadType(payload)
	if err != nil || typ != TypeRequest {
		t.Fatalf("PayloadType = %q, %v", typ, err)
	}
	got, err := DecodeRequest(payload)
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	got.ID = chunks[0].JobID
	return got
}

func encoded(t *testing.T, e sarama.Encoder) []byte {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func consumerHeaders(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

func assertRequestsEqual(t *testing.T, got, want *Request) {
	t.Helper()
	if got.ID != want.ID || got.Method != want.Method || got.Path != want.Path || got.RawQuery != want.RawQuery ||
		got.ReplyTopic != want.ReplyTopic || got.ReplyPartition != want.ReplyPartition ||
		!got.Deadline.Equal(want.Deadline) || got.Traceparent != want.Traceparent {
		t.Errorf("request fields differ:\n got %+v\nwant %+v", *got, *want)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("body differs: got %d bytes, want %d", len(got.Body), len(want.Body))
	}
	if len(got.Header)+len(want.Header) > 0 && !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("header = %v, want %v", got.Header, want.Header)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	cases := []Response{
		{ID: "r1", Status: 200, Header: http.Header{"Content-Type": {"application/octet-stream"}}, Body: allBytes()},
		{ID: "r2", Status: 204},
		{ID: "r3", Status: 504, ErrorKind: ErrorTimeout, ErrorMessage: "upstream did not answer within 15m0s"},
		{ID: "r4", ErrorKind: ErrorIncomplete, ErrorMessage: "2 of 3 chunks arrived"},
		{ID: "r5", Status: 201, Header: http.Header{"Set-Cookie": {"a=1", "b=2"}}, Body: bigBody(200 << 10)},
	}
	for _, want := range cases {
		t.Run(want.ID, func(t *testing.T) {
			msgs, err := ResponseMessages("replies", 3, &want, 16<<10)
			if err != nil {
				t.Fatalf("ResponseMessages: %v", err)
			}
			chunks := make([]Chunk, len(msgs))
			for i, m := range msgs {
				if m.Partition != 3 || m.Topic != "replies" {
					t.Fatalf("message %d to %s/%d, want replies/3", i, m.Topic, m.Partition)
				}
				if chunks[i], err = ParseChunk(encoded(t, m.Key), consumerHeaders(m.Headers), encoded(t, m.Value)); err != nil {
					t.Fatalf("ParseChunk: %v", err)
				}
				if chunks[i].Type != TypeResponse {
					t.Fatalf("chunk type %q", chunks[i].Type)
				}
			}
			payload, err := Join(chunks)
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			got, err := DecodeResponse(payload)
			if err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			got.ID = chunks[0].JobID
			if got.ID != want.ID || got.Status != want.Status || got.ErrorKind != want.ErrorKind ||
				got.ErrorMessage != want.ErrorMessage || !bytes.Equal(got.Body, want.Body) ||
				(len(got.Header)+len(want.Header) > 0 && !reflect.DeepEqual(got.Header, want.Header)) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeCanonicalisesHeaderNames(t *testing.T) {
	p := payloadWithMeta(payloadTypeRequest, `{"method":"GET","path":"/","headers":{"content-type":["a"],"Content-Type":["b"],"x-trace-id":["t"]}}`, nil)
	r, err := DecodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted names: "Content-Type" < "content-type", so b comes first.
	if got := r.Header.Values("Content-Type"); !reflect.DeepEqual(got, []string{"b", "a"}) {
		t.Errorf("Content-Type = %q, want [b a]", got)
	}
	if got := r.Header.Get("X-Trace-Id"); got != "t" {
		t.Errorf("X-Trace-Id = %q", got)
	}
	if r.ReplyPartition != NoPartition || !r.Deadline.IsZero() {
		t.Errorf("absent replyPartition/deadline decoded as %d/%v", r.ReplyPartition, r.Deadline)
	}
}

func TestDecodeIgnoresUnknownMetadataFields(t *testing.T) {
	p := payloadWithMeta(payloadTypeRequest, `{"method":"GET","path":"/","futureField":{"x":[1,2]}}`, []byte("b"))
	r, err := DecodeRequest(p)
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	if string(r.Body) != "b" {
		t.Errorf("body %q", r.Body)
	}
}

func TestBodyAliasesPayload(t *testing.T) {
	p, err := EncodeRequest(&Request{Method: "POST", Body: []byte("abc"), ReplyPartition: NoPartition})
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	p[len(p)-1] = 'z'
	if string(r.Body) != "abz" {
		t.Errorf("decoded body %q does not alias the payload", r.Body)
	}
	if cap(r.Body) != len(r.Body) {
		t.Errorf("body capacity %d exposes bytes past the payload", cap(r.Body))
	}
}

func payloadWithMeta(typ byte, meta string, body []byte) []byte {
	p := []byte{'K', 'S', Version, typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(p[4:], uint32(len(meta)))
	p = append(p, meta...)
	return append(p, body...)
}

func TestDecodeRequestErrors(t *testing.T) {
	valid, err := EncodeRequest(goldenRequest())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := EncodeResponse(&Response{Status: 200})
	if err != nil {
		t.Fatal(err)
	}
	with := func(i int, b byte) []byte { p := bytes.Clone(valid); p[i] = b; return p }
	metaLen := func(n uint32) []byte { p := bytes.Clone(valid); binary.BigEndian.PutUint32(p[4:], n); return p }
	req := func(meta string) []byte { return payloadWithMeta(payloadTypeRequest, meta, nil) }
	cases := []struct {
		name    string
		payload []byte
		field   string
		is      error
		text    string
	}{
		{"empty", nil, "payload", ErrMalformed, "shorter than the 8-byte prefix"},
		{"short", valid[:7], "payload", ErrMalformed, "7 bytes"},
		{"bad magic", with(0, 'X'), "payload", ErrMalformed, "bad magic"},
		{"version 2", with(2, 2), "payload", ErrUnsupportedVersion, "version 2"},
		{"unknown type", with(3, 9), "payload", ErrMalformed, "unknown type byte 9"},
		{"response payload", resp, "payload", ErrMalformed, "is a response payload, want a request"},
		{"metadata past end", metaLen(uint32(len(valid))), "payload", ErrMalformed, "beyond the payload"},
		{"metadata over limit", metaLen(MaxMetadataBytes + 1), "payload", ErrTooLarge, "over the limit"},
		{"invalid JSON", req(`{"method":`), "metadata", ErrMalformed, "invalid JSON"},
		{"JSON array", req(`[]`), "metadata", ErrMalformed, "invalid JSON"},
		{"trailing garbage", req(`{"method":"GET"} x`), "metadata", ErrMalformed, "invalid JSON"},
		{"wrong field type", req(`{"method":7}`), "metadata", ErrMalformed, "invalid JSON"},
		{"null metadata", req(`null`), "metadata.method", ErrMalformed, "missing"},
		{"no method", req(`{"path":"/"}`), "metadata.method", ErrMalformed, "missing"},
		{"method with space", req(`{"method":"GET /x"}`), "metadata.method", ErrMalformed, "not an HTTP token"},
		{"method with CRLF", req(`{"method":"GET\r\nX: y"}`), "metadata.method", ErrMalformed, "not an HTTP token"},
		{"method too long", req(`{"method":"` + strings.Repeat("A", 65) + `"}`), "metadata.method", ErrMalformed, "the limit is 64"},
		{"bad reply topic", req(`{"method":"GET","replyTopic":"a/b"}`), "metadata.replyTopic", ErrMalformed, "only a-z"},
		{"reply topic ..", req(`{"method":"GET","replyTopic":".."}`), "metadata.replyTopic", ErrMalformed, "not a legal topic"},
		{"reply topic too long", req(`{"method":"GET","replyTopic":"` + strings.Repeat("t", 250) + `"}`), "metadata.replyTopic", ErrMalformed, "limit is 249"},
		{"reply partition -2", req(`{"method":"GET","replyPartition":-2}`), "metadata.replyPartition", ErrMalformed, "negative"},
		{"reply partition overflow", req(`{"method":"GET","replyPartition":3000000000}`), "metadata", ErrMalformed, "invalid JSON"},
		{"negative deadline", req(`{"method":"GET","deadlineMs":-5}`), "metadata.deadlineMs", ErrMalformed, "negative"},
		{"traceparent with newline", req(`{"method":"GET","traceparent":"00-a\nb"}`), "metadata.traceparent", ErrMalformed, "not visible ASCII"},
		{"empty header name", req(`{"method":"GET","headers":{"":["x"]}}`), "metadata.headers", ErrMalformed, "empty header name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRequest(tc.payload)
			assertFormatError(t, err, tc.field, tc.is, tc.text)
			if r != nil {
				t.Errorf("got a request with the error: %+v", r)
			}
		})
	}
}

func TestDecodeResponseErrors(t *testing.T) {
	reqPayload, _ := EncodeRequest(goldenRequest())
	resp := func(meta string) []byte { return payloadWithMeta(payloadTypeResponse, meta, nil) }
	cases := []struct {
		name    string
		payload []byte
		field   string
		is      error
		text    string
	}{
		{"request payload", reqPayload, "payload", ErrMalformed, "is a request payload, want a response"},
		{"no status, no kind", resp(`{}`), "metadata.status", ErrMalformed, "status 0 needs an errorKind"},
		{"status 99", resp(`{"status":99}`), "metadata.status", ErrMalformed, "not a 3-digit"},
		{"status 1000", resp(`{"status":1000}`), "metadata.status", ErrMalformed, "not a 3-digit"},
		{"bad kind", resp(`{"status":500,"errorKind":"Bad Kind"}`), "metadata.errorKind", ErrMalformed, "only a-z"},
		{"long kind", resp(`{"status":500,"errorKind":"` + strings.Repeat("k", 65) + `"}`), "metadata.errorKind", ErrMalformed, "the limit is 64"},
		{"invalid JSON", resp(`{"status":"200"}`), "metadata", ErrMalformed, "invalid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeResponse(tc.payload)
			assertFormatError(t, err, tc.field, tc.is, tc.text)
		})
	}
	// A kind from a newer portal is accepted.
	r, err := DecodeResponse(resp(`{"errorKind":"quota_exceeded","errorMessage":"x"}`))
	if err != nil || r.ErrorKind != "quota_exceeded" {
		t.Errorf("unknown kind: %v, %+v", err, r)
	}
}

func TestEncodeValidates(t *testing.T) {
	if _, err := EncodeRequest(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil request: %v", err)
	}
	if _, err := EncodeResponse(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil response: %v", err)
	}
	for name, r := range map[string]*Request{
		"no method":        {ReplyPartition: NoPartition},
		"bad method":       {Method: "G T", ReplyPartition: NoPartition},
		"bad partition":    {Method: "GET", ReplyPartition: -7},
		"deadline in 1969": {Method: "GET", ReplyPartition: NoPartition, Deadline: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)},
		"bad topic":        {Method: "GET", ReplyPartition: NoPartition, ReplyTopic: "x y"},
		"empty header":     {Method: "GET", ReplyPartition: NoPartition, Header: http.Header{"": {"v"}}},
	} {
		if _, err := EncodeRequest(r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: EncodeRequest = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := EncodeResponse(&Response{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("response without status or kind: %v", err)
	}
	big := http.Header{"X-Big": {strings.Repeat("v", MaxMetadataBytes)}}
	if _, err := EncodeRequest(&Request{Method: "GET", ReplyPartition: NoPartition, Header: big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("metadata over the limit: %v, want ErrTooLarge", err)
	}
}

func assertFormatError(t *testing.T, err error, field string, is error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v on %s", is, field)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if fe.Field != field {
		t.Errorf("error %q names field %q, want %q", err, fe.Field, field)
	}
	if !errors.Is(err, is) {
		t.Errorf("error %q does not match %v", err, is)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("error %q does not say %q", err, text)
	}
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ErrorKind
	}{
		{nil, ErrorNone},
		{malformed("x", "y"), ErrorMalformed},
		{formatErr(ErrChecksum, "payload", "x"), ErrorMalformed},
		{formatErr(ErrUnsupportedVersion, "payload", "x"), ErrorMalformed},
		{tooLarge("x", "y"), ErrorTooLarge},
		{errors.New("disk on fire"), ErrorInternal},
	} {
		wrapped := tc.err
		if wrapped != nil {
			wrapped = errorsJoinWrap(tc.err)
		}
		if got := KindOf(wrapped); got != tc.want {
			t.Errorf("KindOf(%v) = %q, want %q", wrapped, got, tc.want)
		}
	}
	if errors.Is(tooLarge("x", "y"), ErrMalformed) {
		t.Error("a too-large error must not also be malformed")
	}
}

func errorsJoinWrap(err error) error { return errors.Join(errors.New("context"), err) }

func TestJobIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewJobID()
		if err := ValidateJobID(id); err != nil {
			t.Fatalf("NewJobID() = %q is invalid: %v", id, err)
		}
		if len(id) != 26 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
			t.Fatalf("NewJobID() = %q is not 26 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewJobID() repeated %q", id)
		}
		seen[id] = true
	}
	for id, text := range map[string]string{
		"":                        "empty job ID",
		"a b":                     "byte 0x20 at 1",
		"caf\u00e9":               "not visible ASCII",
		"x\x00":                   "byte 0x00",
		strings.Repeat("x", 129):  "limit is 128",
		"tab\there":               "byte 0x09",
		"del\x7f":                 "byte 0x7f",
		strings.Repeat("x", 1000): "limit is 128",
	} {
		assertFormatError(t, ValidateJobID(id), "key", ErrMalformed, text)
	}
	for _, ok := range []string{"a", strings.Repeat("x", 128), "550e8400-e29b-41d4-a716-446655440000", "job/42:retry~1"} {
		if err := ValidateJobID(ok); err != nil {
			t.Errorf("ValidateJobID(%q) = %v", ok, err)
		}
	}
	r := NewRequest("GET", "/x")
	if r.ReplyPartition != NoPartition || ValidateJobID(r.ID) != nil || r.Method != "GET" || r.Path != "/x" {
		t.Errorf("NewRequest = %+v", r)
	}
}

func TestPeekRoutingFromTheFirstChunk(t *testing.T) {
	r := &Request{ID: "JOB", Method: "POST", Path: "/x", Body: bytes.Repeat([]byte("b"), 10000),
		ReplyTopic: "my.replies", ReplyPartition: 3}
	payload, err := EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := Split("JOB", TypeRequest, payload, 2048)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := PeekRouting(chunks[0].Data)
	if !ok || got.ReplyTopic != "my.replies" || got.ReplyPartition != 3 {
		t.Fatalf("PeekRouting(chunk 0) = %+v, %v", got, ok)
	}
	if _, ok := PeekRouting(chunks[1].Data); ok {
		t.Errorf("PeekRouting found routing in chunk 1")
	}
	if _, ok := PeekRouting(payload[:PrefixSize+3]); ok {
		t.Errorf("PeekRouting accepted truncated metadata")
	}
	r.ReplyTopic, r.ReplyPartition = "", NoPartition
	payload, _ = EncodeRequest(r)
	if got, ok := PeekRouting(payload); !ok || got.ReplyTopic != "" || got.ReplyPartition != NoPartition {
		t.Errorf("no routing: got %+v, %v", got, ok)
	}
}

func TestResponseMessagesMatchTheJoinedPayload(t *testing.T) {
	body := make([]byte, 50000)
	for i := range body {
		body[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, 2000, 50000} {
		r := &Response{ID: "JOB", Status: 201, Header: map[string][]string{"X-A": {"b"}}, Body: body[:n]}
		msgs, err := ResponseMessages("t", NoPartition, r, 4096)
		if err != nil {
			t.Fatal(err)
		}
		want, err := EncodeResponse(r)
		if err != nil {
			t.Fatal(err)
		}
		chunks, err := Split("JOB", TypeResponse, want, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(chunks) {
			t.Fatalf("%d bytes: %d messages, Split gives %d", n, len(msgs), len(chunks))
		}
		var parsed []Chunk
		for i, m := range msgs {
			v, _ := m.Value.Encode()
			if !bytes.Equal(v, chunks[i].Data) {
				t.Fatalf("%d bytes: chunk %d differs from Split's", n, i)
			}
			hs := make([]*sarama.RecordHeader, len(m.Headers))
			for j := range m.Headers {
				hs[j] = &m.Headers[j]
			}
			c, err := ParseChunk([]byte("JOB"), hs, v)
			if err != nil {
				t.Fatalf("%d bytes: chunk %d: %v", n, i, err)
			}
			parsed = append(parsed, c)
		}
		got, err := Join(parsed)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		resp, err := DecodeResponse(got)
		if err != nil || resp.Status != 201 || !bytes.Equal(resp.Body, body[:n]) {
			t.Fatalf("%d bytes: round trip: %v", n, err)
		}
	}
}
