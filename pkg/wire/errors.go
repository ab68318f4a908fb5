package wire

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by the decoding functions of this
// package (ParseChunk, DecodeRequest, DecodeResponse, Join, VerifyChecksum)
// matches ErrMalformed or ErrTooLarge with errors.Is, and, where it helps, one
// of the more precise sentinels too. KindOf maps them to an ErrorKind.
var (
	// ErrMalformed: the bytes do not follow this format.
	ErrMalformed = errors.New("malformed")
	// ErrUnsupportedVersion: a ks-version header or payload version this
	// implementation does not speak. It also matches ErrMalformed.
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrChecksum: the assembled payload does not match its CRC-32C. It also
	// matches ErrMalformed.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTooLarge: a payload, its metadata or its chunk count is over a limit
	// of the format. It does not match ErrMalformed.
	ErrTooLarge = errors.New("too large")
)

// FormatError is a precise decoding or validation error: which field (a
// Kafka header name such as "ks-chunk", "key", "payload", or a metadata field
// such as "metadata.method") and what is wrong with it.
type FormatError struct {
	// Field names the part of the message at fault.
	Field string
	// Problem says what is wrong, for people.
	Problem string
	// kind is ErrMalformed, ErrTooLarge, ErrUnsupportedVersion or ErrChecksum.
	kind error
}

// Error implements error.
func (e *FormatError) Error() string {
	return "wire: " + e.Field + ": " + e.Problem
}

// Unwrap lets errors.Is match the sentinel errors.
func (e *FormatError) Unwrap() []error {
	switch e.kind {
	case ErrMalformed, ErrTooLarge, nil: //nolint:errorlint // e.kind is one of this package's sentinels, compared by identity
		return []error{e.kind}
	default:
		return []error{ErrMalformed, e.kind}
	}
}

func malformed(field, format string, args ...any) error {
	return &FormatError{Field: field, Problem: fmt.Sprintf(format, args...), kind: ErrMalformed}
}

func tooLarge(field, format string, args ...any) error {
	return &FormatError{Field: field, Problem: fmt.Sprintf(format, args...), kind: ErrTooLarge}
}

func formatErr(kind error, field, format string, args ...any) error {
	return &FormatError{Field: field, Problem: fmt.Sprintf(format, args...), kind: kind}
}

// KindOf maps an error of this package to the ErrorKind a portal reports:
// ErrorNone for nil, ErrorTooLarge for ErrTooLarge, ErrorMalformed for
// ErrMalformed (including ErrChecksum and ErrUnsupportedVersion), and
// ErrorInternal for anything else.
func KindOf(err error) ErrorKind {
	switch {
	case err == nil:
		return ErrorNone
	case errors.Is(err, ErrTooLarge):
		return ErrorTooLarge
	case errors.Is(err, ErrMalformed):
		return ErrorMalformed
	default:
		return ErrorInternal
	}
}
