package wire

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"time"
)

// Limits and constants of version 1 of the format. docs/protocol.md lists
// them for implementers in other languages.
const (
	// Version is the format version this package writes and reads: the
	// ks-version header and the third byte of every payload.
	Version = 1
	// PrefixSize is the fixed part of a payload: magic "KS", version, type,
	// metadata length (uint32, big-endian).
	PrefixSize = 8
	// MaxMetadataBytes bounds the JSON metadata of one payload.
	MaxMetadataBytes = 1 << 20
	// MaxPayloadBytes bounds a whole payload (prefix + metadata + body). It
	// fits a signed 32-bit integer, so that every language can hold a payload
	// in one array.
	MaxPayloadBytes = 1<<31 - 1
	// MaxChunks bounds the chunk count of one payload.
	MaxChunks = 1 << 20
	// MaxMethodBytes bounds the HTTP method.
	MaxMethodBytes = 64
	// MaxTraceparentBytes bounds the traceparent value.
	MaxTraceparentBytes = 512
	// MaxErrorKindBytes bounds an error kind.
	MaxErrorKindBytes = 64
)

// The payload type byte (offset 3).
const (
	payloadTypeRequest  byte = 1
	payloadTypeResponse byte = 2
)

// magic is the first two bytes of every payload.
const magic0, magic1 = 'K', 'S'

// requestMeta is the JSON metadata of a request payload.
type requestMeta struct {
	Method         string              `json:"method"`
	Path           string              `json:"path"`
	Query          string              `json:"query,omitempty"`
	Headers        map[string][]string `json:"headers,omitempty"`
	ReplyTopic     string              `json:"replyTopic,omitempty"`
	ReplyPartition partition           `json:"replyPartition,omitzero"`
	DeadlineMs     int64               `json:"deadlineMs,omitempty"`
	Traceparent    string              `json:"traceparent,omitempty"`
}

// responseMeta is the JSON metadata of a response payload.
type responseMeta struct {
	Status       int                 `json:"status"`
	Headers      map[string][]string `json:"headers,omitempty"`
	ErrorKind    ErrorKind           `json:"errorKind,omitempty"`
	ErrorMessage string              `json:"errorMessage,omitempty"`
}

// partition is a reply partition whose zero value, for JSON's omitzero, is
// NoPartition.
type partition int32

// IsZero reports whether p is NoPartition (so that omitzero leaves it out).
func (p partition) IsZero() bool { return int32(p) == NoPartition }

// EncodeRequest returns the payload of r: the 8-byte prefix, the JSON
// metadata and the body. r.ID is not part of the payload (it is the Kafka
// key of every chunk). The body is copied once, into the returned slice.
func EncodeRequest(r *Request) ([]byte, error) {
	if r == nil {
		return nil, malformed("request", "nil request")
	}
	if err := validateRequest(r); err != nil {
		return nil, err
	}
	m := requestMeta{
		Method:         r.Method,
		Path:           r.Path,
		Query:          r.RawQuery,
		Headers:        r.Header,
		ReplyTopic:     r.ReplyTopic,
		ReplyPartition: partition(r.ReplyPartition),
		Traceparent:    r.Traceparent,
	}
	if !r.Deadline.IsZero() {
		m.DeadlineMs = r.Deadline.UnixMilli()
	}
	return encode(payloadTypeRequest, &m, r.Body)
}

// EncodeResponse returns the payload of r, framed like a request's. r.ID is
// not part of the payload.
func EncodeResponse(r *Response) ([]byte, error) {
	if r == nil {
		return nil, malformed("response", "nil response")
	}
	head, err := responseHead(r)
	if err != nil {
		return nil, err
	}
	return join(head, r.Body), nil
}

// responseHead is EncodeResponse without the body: the payload is the
// returned head followed by r.Body.
func responseHead(r *Response) ([]byte, error) {
	m := responseMeta{
		Status:       r.Status,
		Headers:      r.Header,
		ErrorKind:    r.ErrorKind,
		ErrorMessage: r.ErrorMessage,
	}
	if err := validateResponseMeta(&m); err != nil {
		return nil, err
	}
	return responseHeadOf(&m, len(r.Body))
}

func encode(typ byte, meta any, body []byte) ([]byte, error) {
	head, err := encodeHead(typ, meta, len(body))
	if err != nil {
		return nil, err
	}
	return join(head, body), nil
}

// join returns head followed by body in a new slice.
func join(head, body []byte) []byte {
	p := make([]byte, len(head)+len(body))
	copy(p, head)
	copy(p[len(head):], body)
	return p
}

// encodeHead returns the prefix and metadata of a payload whose body has
// bodyLen bytes: the payload is head followed by the body.
func encodeHead(typ byte, meta any, bodyLen int) ([]byte, error) {
	js, err := json.Marshal(meta)
	if err != nil {
		return nil, malformed("metadata", "encoding JSON: %v", err)
	}
	if len(js) > MaxMetadataBytes {
		return nil, tooLarge("metadata", "%d bytes of metadata, the limit is %d", len(js), MaxMetadataBytes)
	}
	total := int64(PrefixSize) + int64(len(js)) + int64(bodyLen)
	if total > MaxPayloadBytes {
		return nil, tooLarge("payload", "%d bytes, the limit is %d", total, MaxPayloadBytes)
	}
	h := make([]byte, PrefixSize+len(js))
	h[0], h[1], h[2], h[3] = magic0, magic1, Version, typ
	binary.BigEndian.PutUint32(h[4:8], uint32(len(js)))
	copy(h[PrefixSize:], js)
	return h, nil
}

// DecodeRequest parses a request payload. The returned Request's Body
// aliases payload (no copy); its ID is empty: set it from the chunks' key.
// Header names are canonicalised (textproto.CanonicalMIMEHeaderKey), values
// of names that differ only in case are merged in sorted-name order. A
// missing replyPartition decodes as NoPartition, a missing deadline as the
// zero time.
func DecodeRequest(payload []byte) (*Request, error) {
	js, body, err := splitPayload(payload, payloadTypeRequest)
	if err != nil {
		return nil, err
	}
	m := requestMeta{ReplyPartition: partition(NoPartition)}
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, malformed("metadata", "invalid JSON: %v", err)
	}
	if m.DeadlineMs < 0 {
		return nil, malformed("metadata.deadlineMs", "negative: %d", m.DeadlineMs)
	}
	r := &Request{
		Method:         m.Method,
		Path:           m.Path,
		RawQuery:       m.Query,
		Body:           body,
		ReplyTopic:     m.ReplyTopic,
		ReplyPartition: int32(m.ReplyPartition),
		Traceparent:    m.Traceparent,
	}
	if r.Header, err = canonicalHeader(m.Headers); err != nil {
		return nil, err
	}
	if m.DeadlineMs > 0 {
		r.Deadline = time.UnixMilli(m.DeadlineMs).UTC()
	}
	if err := validateRequest(r); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeResponse parses a response payload. The returned Response's Body
// aliases payload; its ID is empty: set it from the chunks' key. Error kinds
// this version does not know are accepted (newer portals may add kinds);
// treat them as ErrorInternal.
func DecodeResponse(payload []byte) (*Response, error) {
	js, body, err := splitPayload(payload, payloadTypeResponse)
	if err != nil {
		return nil, err
	}
	var m responseMeta
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, malformed("metadata", "invalid JSON: %v", err)
	}
	if err := validateResponseMeta(&m); err != nil {
		return nil, err
	}
	r := &Response{
		Status:       m.Status,
		Body:         body,
		ErrorKind:    m.ErrorKind,
		ErrorMessage: m.ErrorMessage,
	}
	if r.Header, err = canonicalHeader(m.Headers); err != nil {
		return nil, err
	}
	return r, nil
}

// PayloadType reports whether payload is a request or a response payload of
// a version this package reads, from its prefix alone.
func PayloadType(payload []byte) (MessageType, error) {
	if err := checkPrefix(payload); err != nil {
		return "", err
	}
	if payload[3] == payloadTypeRequest {
		return TypeRequest, nil
	}
	return TypeResponse, nil
}

func checkPrefix(payload []byte) error {
	if len(payload) < PrefixSize {
		return malformed("payload", "%d bytes, shorter than the %d-byte prefix", len(payload), PrefixSize)
	}
	if payload[0] != magic0 || payload[1] != magic1 {
		return malformed("payload", "bad magic %#02x %#02x, want \"KS\"", payload[0], payload[1])
	}
	if payload[2] != Version {
		return formatErr(ErrUnsupportedVersion, "payload", "version %d, this implementation reads version %d", payload[2], Version)
	}
	if payload[3] != payloadTypeRequest && payload[3] != payloadTypeResponse {
		return malformed("payload", "unknown type byte %d, want 1 (request) or 2 (response)", payload[3])
	}
	return nil
}

// splitPayload checks the prefix and returns the metadata and body.
func splitPayload(payload []byte, want byte) (meta, body []byte, err error) {
	if err := checkPrefix(payload); err != nil {
		return nil, nil, err
	}
	if payload[3] != want {
		names := [...]string{payloadTypeRequest: "request", payloadTypeResponse: "response"}
		return nil, nil, malformed("payload", "is a %s payload, want a %s", names[payload[3]], names[want])
	}
	n := binary.BigEndian.Uint32(payload[4:8])
	if n > MaxMetadataBytes {
		return nil, nil, tooLarge("payload", "metadata length %d is over the limit of %d", n, MaxMetadataBytes)
	}
	if uint64(n) > uint64(len(payload)-PrefixSize) {
		return nil, nil, malformed("payload", "metadata length %d is beyond the payload's %d bytes after the prefix", n, len(payload)-PrefixSize)
	}
	end := PrefixSize + int(n)
	return payload[PrefixSize:end], payload[end:len(payload):len(payload)], nil
}

func canonicalHeader(in map[string][]string) (http.Header, error) {
	if len(in) == 0 {
		return nil, nil
	}
	h := make(http.Header, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if k == "" {
			return nil, malformed("metadata.headers", "empty header name")
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		h[ck] = append(h[ck], in[k]...)
	}
	return h, nil
}

func validateRequest(r *Request) error {
	if r.Method == "" {
		return malformed("metadata.method", "missing")
	}
	if len(r.Method) > MaxMethodBytes {
		return malformed("metadata.method", "%d bytes, the limit is %d", len(r.Method), MaxMethodBytes)
	}
	for i := 0; i < len(r.Method); i++ {
		if !isTokenChar(r.Method[i]) {
			return malformed("metadata.method", "%q is not an HTTP token", r.Method)
		}
	}
	for k := range r.Header {
		if k == "" {
			return malformed("metadata.headers", "empty header name")
		}
	}
	if r.ReplyTopic != "" {
		if err := validateTopic(r.ReplyTopic); err != nil {
			return err
		}
	}
	if r.ReplyPartition < NoPartition {
		return malformed("metadata.replyPartition", "%d is negative (use -1 or leave it out for none)", r.ReplyPartition)
	}
	if !r.Deadline.IsZero() && r.Deadline.UnixMilli() <= 0 {
		return malformed("metadata.deadlineMs", "deadline %s is not after the Unix epoch", r.Deadline)
	}
	if len(r.Traceparent) > MaxTraceparentBytes {
		return malformed("metadata.traceparent", "%d bytes, the limit is %d", len(r.Traceparent), MaxTraceparentBytes)
	}
	for i := 0; i < len(r.Traceparent); i++ {
		if c := r.Traceparent[i]; c < 0x21 || c > 0x7e {
			return malformed("metadata.traceparent", "byte %#02x at %d is not visible ASCII", c, i)
		}
	}
	return nil
}

func validateResponseMeta(m *responseMeta) error {
	switch {
	case m.Status == 0 && m.ErrorKind == ErrorNone:
		return malformed("metadata.status", "missing (status 0 needs an errorKind)")
	case m.Status != 0 && (m.Status < 100 || m.Status > 999):
		return malformed("metadata.status", "%d is not a 3-digit HTTP status", m.Status)
	}
	if len(m.ErrorKind) > MaxErrorKindBytes {
		return malformed("metadata.errorKind", "%d bytes, the limit is %d", len(m.ErrorKind), MaxErrorKindBytes)
	}
	for i := 0; i < len(m.ErrorKind); i++ {
		if c := m.ErrorKind[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return malformed("metadata.errorKind", "%q: only a-z and _ are allowed", m.ErrorKind)
		}
	}
	for k := range m.Headers {
		if k == "" {
			return malformed("metadata.headers", "empty header name")
		}
	}
	return nil
}

// validateTopic applies Kafka's rules for topic names.
func validateTopic(t string) error {
	if len(t) > 249 {
		return malformed("metadata.replyTopic", "%d bytes, Kafka's limit is 249", len(t))
	}
	if t == "." || t == ".." {
		return malformed("metadata.replyTopic", "%q is not a legal topic name", t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return malformed("metadata.replyTopic", "%q: only a-z, A-Z, 0-9, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Routing is where a job's response goes, as its requester asked.
type Routing struct {
	// ReplyTopic is empty when the requester named none.
	ReplyTopic string
	// ReplyPartition is NoPartition when the requester named none.
	ReplyPartition int32
}

// PeekRouting reads the reply topic and partition from the start of a
// request payload (the data of its chunk 0) without the rest of it, so that
// a job rejected before it is whole (too large, incomplete, corrupt) is still
// answered where its requester listens. ok is false when the data does not
// hold the whole metadata or it does not parse.
func PeekRouting(data []byte) (r Routing, ok bool) {
	if len(data) < PrefixSize || checkPrefix(data) != nil || data[3] != payloadTypeRequest {
		return Routing{}, false
	}
	n := binary.BigEndian.Uint32(data[4:8])
	if n > MaxMetadataBytes || uint64(n) > uint64(len(data)-PrefixSize) {
		return Routing{}, false
	}
	var m struct {
		ReplyTopic     string    `json:"replyTopic"`
		ReplyPartition partition `json:"replyPartition"`
	}
	m.ReplyPartition = partition(NoPartition)
	if json.Unmarshal(data[PrefixSize:PrefixSize+int(n)], &m) != nil {
		return Routing{}, false
	}
	if m.ReplyTopic != "" && validateTopic(m.ReplyTopic) != nil {
		return Routing{}, false
	}
	if m.ReplyPartition < partition(NoPartition) {
		return Routing{}, false
	}
	return Routing{ReplyTopic: m.ReplyTopic, ReplyPartition: int32(m.ReplyPartition)}, true
}
