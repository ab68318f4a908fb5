package upstream

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime/debug"
	"sync"
)

// errBodyReleased is returned when net/http asks for a body the call has
// already given up. It cannot happen: the body is released only once
// http.Client.Do has returned and no later attempt can send it.
var errBodyReleased = errors.New("the request body was already released")

// requestBody is a call's request body, shared by its attempts until none of
// them can need it any more. The body is sent without a copy (each attempt
// reads the job's payload in place), and release drops the call's reference
// to it, so that a large payload can be freed while the upstream's response
// is read rather than when the call ends: the request and the response are
// then not both held (docs/benchmarks.md, large).
type requestBody struct {
	size int64

	mu       sync.Mutex
	b        []byte
	released bool
}

func newRequestBody(b []byte) *requestBody {
	return &requestBody{size: int64(len(b)), b: b}
}

// attach sets req's Body, ContentLength and GetBody (which net/http calls to
// send the body again on a fresh connection or after a 307/308 redirect).
func (rb *requestBody) attach(req *http.Request) error {
	req.ContentLength = rb.size
	if rb.size == 0 {
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil
	}
	body, err := rb.open()
	if err != nil {
		return err
	}
	req.Body, req.GetBody = body, rb.open
	return nil
}

// open returns a reader of the whole body.
func (rb *requestBody) open() (io.ReadCloser, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.released {
		return nil, errBodyReleased
	}
	if rb.size < inPlaceBelow {
		return io.NopCloser(bytes.NewReader(rb.b)), nil
	}
	return &bodyReader{b: rb.b}, nil
}

// inPlaceBelow is the body size below which a body is sent through a
// *bytes.Reader, which net/http knows to be in memory: it then writes the
// request's headers and body in one system call. With any other reader it
// flushes the headers first and copies the body through a 32 KiB buffer of
// its own (net.TCPConn's ReadFrom): two writes and an allocation per request,
// which cost the throughput scenario about a fifth of the portal's CPU.
// Dropping a body that small early saves nothing worth that.
const inPlaceBelow = 64 << 10

// release drops the call's reference to the body. Readers already open keep
// theirs until they reach the end or are closed. A body of at least
// returnMemoryAbove bytes is then collected and its memory returned to the
// operating system at once (see returnMemoryAbove).
func (rb *requestBody) release() {
	rb.mu.Lock()
	was := !rb.released
	rb.b, rb.released = nil, true
	rb.mu.Unlock()
	if was && rb.size >= returnMemoryAbove {
		returnMemory()
	}
}

// returnMemoryAbove is the body size from which releasing a request body
// runs a garbage collection and returns free memory to the operating system
// (debug.FreeOSMemory), before the response is read. Without it, Go's
// collector (GOGC=100, no GOMEMLIMIT) frees the payload only at its next
// cycle, and keeps the freed pages, and those of the chunk data it was
// assembled from, mapped for minutes: the response is then read into new
// pages and the process holds the request, its chunk data and the response
// at once (a 256 MiB job peaked at 736 MiB RSS instead of about 2 × body).
// Collecting costs a few milliseconds, nothing next to moving such a body;
// below the threshold, the collector's own pacing is left alone.
const returnMemoryAbove = 32 << 20

// returnMemory is debug.FreeOSMemory; tests count its calls.
var returnMemory = debug.FreeOSMemory

// bodyReader reads a byte slice in place and drops its reference to it at
// the end or on Close, whichever comes first: the transport may keep the
// request (and so its Body) until the response has been read. Close may be
// called by another goroutine than Read.
type bodyReader struct {
	mu sync.Mutex
	b  []byte
}

// Read implements io.Reader.
func (r *bodyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.b) == 0 {
		r.b = nil
		return 0, io.EOF
	}
	n := copy(p, r.b)
	if r.b = r.b[n:]; len(r.b) == 0 {
		r.b = nil
	}
	return n, nil
}

// Close implements io.Closer.
func (r *bodyReader) Close() error {
	r.mu.Lock()
	r.b = nil
	r.mu.Unlock()
	return nil
}
