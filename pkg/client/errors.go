package client

import (
	"fmt"

	"kafkasend.io/kafkasend/pkg/wire"
)

// Error is a job that ended without the upstream's answer: the portal's
// error response, or the caller's deadline passing first.
type Error struct {
	// Kind is the machine-readable reason (wire.ErrorTimeout, ...). Kinds
	// this version does not know match ErrInternal.
	Kind wire.ErrorKind
	// Message explains the kind in one line, for people.
	Message string
	// Status is the HTTP status the portal chose for the error (e.g. 504),
	// or 0.
	Status int
	// JobID is the job the error belongs to, when known.
	JobID string

	cause error
}

// Sentinel errors for errors.Is: an *Error matches the sentinel of its Kind.
var (
	ErrTimeout     = &Error{Kind: wire.ErrorTimeout}
	ErrUnreachable = &Error{Kind: wire.ErrorUnreachable}
	ErrRejected    = &Error{Kind: wire.ErrorRejected}
	ErrTooLarge    = &Error{Kind: wire.ErrorTooLarge}
	ErrMalformed   = &Error{Kind: wire.ErrorMalformed}
	ErrIncomplete  = &Error{Kind: wire.ErrorIncomplete}
	ErrAuth        = &Error{Kind: wire.ErrorAuth}
	ErrInternal    = &Error{Kind: wire.ErrorInternal}
)

// knownKinds are the kinds of version 1 of the protocol.
var knownKinds = map[wire.ErrorKind]bool{
	wire.ErrorTimeout: true, wire.ErrorUnreachable: true, wire.ErrorRejected: true,
	wire.ErrorTooLarge: true, wire.ErrorMalformed: true, wire.ErrorIncomplete: true,
	wire.ErrorAuth: true, wire.ErrorInternal: true,
}

// Error implements error: "KIND: MESSAGE (job ID)".
func (e *Error) Error() string {
	msg := string(e.Kind)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.JobID != "" {
		msg += " (job " + e.JobID + ")"
	}
	return msg
}

// Is matches the sentinel of e's kind; an unknown kind matches ErrInternal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Message != "" || t.JobID != "" || t.Status != 0 || t.cause != nil {
		return false
	}
	return e.effectiveKind() == t.Kind
}

// Unwrap returns the underlying cause, such as context.DeadlineExceeded.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) effectiveKind() wire.ErrorKind {
	if knownKinds[e.Kind] {
		return e.Kind
	}
	return wire.ErrorInternal
}

// responseError turns an error response into an *Error.
func responseError(r *wire.Response) *Error {
	return &Error{Kind: r.ErrorKind, Message: r.ErrorMessage, Status: r.Status, JobID: r.ID}
}

// localError is an error the client itself decided on.
func localError(kind wire.ErrorKind, jobID string, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, JobID: jobID, Message: fmt.Sprintf(format, args...), cause: cause}
}
