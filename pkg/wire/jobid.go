package wire

import "crypto/rand"

// MaxJobIDBytes bounds a job ID.
const MaxJobIDBytes = 128

// NewJobID returns a fresh job ID: 26 characters of RFC 4648 base32
// (A-Z, 2-7) carrying 128 random bits, safe in URLs, headers and logs.
func NewJobID() string { return rand.Text() }

// ValidateJobID checks a job ID: 1 to MaxJobIDBytes bytes of visible ASCII
// (0x21 to 0x7e; no spaces or control characters).
func ValidateJobID(id string) error { return validateID(id) }

func validateID[T string | []byte](id T) error {
	if len(id) == 0 {
		return malformed("key", "empty job ID")
	}
	if len(id) > MaxJobIDBytes {
		return malformed("key", "job ID of %d bytes, the limit is %d", len(id), MaxJobIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return malformed("key", "job ID byte %#02x at %d is not visible ASCII", c, i)
		}
	}
	return nil
}

func validateJobIDBytes(key []byte) error {
	if key == nil {
		return malformed("key", "missing job ID (record has no key)")
	}
	return validateID(key)
}

// NewRequest returns a request with a fresh job ID and no reply partition
// (the zero Request would ask for reply partition 0).
func NewRequest(method, path string) *Request {
	return &Request{ID: NewJobID(), Method: method, Path: path, ReplyPartition: NoPartition}
}
