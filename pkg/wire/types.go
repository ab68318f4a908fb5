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
