// Package wire is the kafkasend wire format shared by requesters and portals:
// a job is one HTTP request, carried as one or more Kafka messages (chunks)
// keyed by the job ID; its answer is one response framed the same way.
// docs/protocol.md describes the bytes so that other languages can speak it.
package wire

import (
	"net/http"
	"time"
)

// ErrorKind says why a job ended without the upstream's own answer. It is
// machine-readable and stable: requesters switch on it.
type ErrorKind string

// The error kinds a portal produces.
const (
	// ErrorNone marks a response that carries the upstream's answer.
	ErrorNone ErrorKind = ""
	// ErrorTimeout: the request timeout or the job deadline passed.
	ErrorTimeout ErrorKind = "timeout"
	// ErrorUnreachable: the upstream could not be reached (connect, TLS, reset).
	ErrorUnreachable ErrorKind = "unreachable"
	// ErrorRejected: refused by policy (path, header, method, redirect).
	ErrorRejected ErrorKind = "rejected"
	// ErrorTooLarge: the request or the upstream's response is over its limit.
	ErrorTooLarge ErrorKind = "too_large"
	// ErrorMalformed: the job's chunks or envelope could not be decoded.
	ErrorMalformed ErrorKind = "malformed"
	// ErrorIncomplete: not all chunks arrived before the assembly timeout.
	ErrorIncomplete ErrorKind = "incomplete"
	// ErrorAuth: no OAuth2 token could be obtained, or the upstream kept refusing it.
	ErrorAuth ErrorKind = "auth"
	// ErrorInternal: the portal failed for a reason of its own.
	ErrorInternal ErrorKind = "internal"
)

// NoPartition means "no reply partition requested".
const NoPartition int32 = -1

// Request is one job: an HTTP request addressed relative to the portal's
// upstream base URL, plus where and by when to answer.
type Request struct {
	// ID is the job ID: the Kafka message key of every chunk, the
	// Idempotency-Key sent upstream, and the key of the response.
	ID string
	// Method, Path and RawQuery of the call; Path is relative to the upstream
	// base path and may not leave it.
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	// ReplyTopic overrides the pipeline's default reply topic when set.
	ReplyTopic string
	// ReplyPartition, when not NoPartition, is the partition the response goes to.
	ReplyPartition int32
	// Deadline, when not zero, is when the requester stops waiting.
	Deadline time.Time
	// Traceparent is the W3C trace context passed to the upstream.
	Traceparent string
}

// Response is the one final answer to a job.
type Response struct {
	ID     string
	Status int
	Header http.Header
	Body   []byte
	// ErrorKind is ErrorNone when Status, Header and Body are the upstream's.
	ErrorKind ErrorKind
	// ErrorMessage explains an error kind in one line for people.
	ErrorMessage string
}

// Status is the HTTP status an error response of kind k carries, for
// requesters that look only at the status (docs/protocol.md section 6):
//
//	timeout      504 Gateway Timeout
//	unreachable  502 Bad Gateway
//	rejected     403 Forbidden
//	too_large    413 Content Too Large (the request; see below)
//	malformed    400 Bad Request
//	incomplete   400 Bad Request
//	auth         502 Bad Gateway (the portal's own credentials failed, not the requester's)
//	internal     500 Internal Server Error, also for kinds this package does not know
//
// ErrorNone has no status of its own: it returns 0. The one exception to the
// table is an upstream response over the portal's limit: too_large with 502,
// since the requester's request was fine.
func (k ErrorKind) Status() int {
	switch k {
	case ErrorNone:
		return 0
	case ErrorTimeout:
		return http.StatusGatewayTimeout
	case ErrorUnreachable, ErrorAuth:
		return http.StatusBadGateway
	case ErrorRejected:
		return http.StatusForbidden
	case ErrorTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrorMalformed, ErrorIncomplete:
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

// ErrorResponse is the portal's own final answer for job id: kind, its
// Status, the one-line message and no body. An ErrorNone kind becomes
// ErrorInternal (an error response always says why).
func ErrorResponse(id string, kind ErrorKind, message string) *Response {
	if kind == ErrorNone {
		kind = ErrorInternal
	}
	return &Response{ID: id, Status: kind.Status(), Header: http.Header{}, ErrorKind: kind, ErrorMessage: message}
}
