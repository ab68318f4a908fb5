package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/pkg/wire"
)

// slowBodyUpstream reads the whole request body, sends the response headers
// at once and holds the response body back until release is closed: the
// window in which the portal reads the response.
func slowBodyUpstream(t *testing.T, status int) (url string, headersSent <-chan int64, release chan<- struct{}) {
	t.Helper()
	sent := make(chan int64, 4)
	rel := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(status)
		w.(http.Flusher).Flush()
		sent <- n
		select {
		case <-rel:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, sent, rel
}

func testOptions(url string, attempts int) Options {
	return Options{
		Upstream: config.Upstream{BaseURL: url, AllowInsecureHTTP: true, MaxRequestBytes: 64 << 20, MaxResponseBytes: 1 << 20},
		Retries: config.Retries{
			Attempts: attempts, Backoff: metav1.Duration{Duration: 10 * time.Millisecond}, MaxBackoff: metav1.Duration{Duration: 50 * time.Millisecond},
			OnStatuses: []int{429, 502, 503, 504}, OnConnectionErrors: true,
		},
		Timeouts: config.Timeouts{Request: metav1.Duration{Duration: 20 * time.Second}},
	}
}

// trackedRequest is a job whose body reports, through the returned channel,
// when the garbage collector has freed it. The caller holds no reference to
// the body.
func trackedRequest(method string, n int) (*wire.Request, <-chan struct{}) {
	body := make([]byte, n)
	for i := range body {
		body[i] = byte(i)
	}
	freed := make(chan struct{})
	runtime.AddCleanup(&body[0], func(ch chan struct{}) { close(ch) }, freed)
	return &wire.Request{ID: "job-1", Method: method, Path: "x", Body: body}, freed
}

// collected runs the collector until freed is closed or tries run out.
func collected(freed <-chan struct{}, tries int) bool {
	for range tries {
		runtime.GC()
		select {
		case <-freed:
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// TestRequestBodyFreedWhileResponseIsRead checks the point of requestBody: a
// call that no later attempt can repeat lets its request body go once the
// response headers are in, so that a large request and its response are not
// held at the same time; a call that may still be repeated keeps it.
func TestRequestBodyFreedWhileResponseIsRead(t *testing.T) {
	const size = 1 << 20
	cases := []struct {
		name     string
		method   string
		attempts int
		status   int
		keep     bool
	}{
		{"POST answered 200: no retry possible", http.MethodPost, 3, http.StatusOK, false},
		{"PUT, last attempt", http.MethodPut, 1, http.StatusOK, false},
		{"PUT answered 200: a failed read would be retried", http.MethodPut, 3, http.StatusOK, true},
		{"POST answered 429: retried whatever the method", http.MethodPost, 3, http.StatusTooManyRequests, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, sent, release := slowBodyUpstream(t, tc.status)
			e, err := New(testOptions(url, tc.attempts))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			r, freed := trackedRequest(tc.method, size)
			done := make(chan *wire.Response, 1)
			go func() { done <- e.Do(context.Background(), r) }()
			if n := <-sent; n != size {
				t.Fatalf("upstream read %d body bytes, want %d", n, size)
			}
			if r.Body != nil {
				t.Error("Do left the caller's Body set")
			}
			// Freed: within generous bounds (cleanups run on their own
			// goroutine, late on a loaded machine). Kept: ten collections
			// must not free it.
			tries := 250
			if tc.keep {
				tries = 10
			}
			if got := collected(freed, tries); got == tc.keep {
				t.Errorf("request body freed while the response was read: %v, want %v", got, !tc.keep)
			}
			close(release)
			resp := <-done
			if tc.status == http.StatusOK && (resp.Status != http.StatusOK || string(resp.Body) != "ok") {
				t.Fatalf("answer %d %q (%s), want 200 \"ok\"", resp.Status, resp.Body, resp.ErrorMessage)
			}
			if tc.status != http.StatusOK {
				// The retry sends the whole body again.
				for range tc.attempts - 1 {
					select {
					case n := <-sent:
						if n != size {
							t.Errorf("retry sent %d body bytes, want %d", n, size)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("no retry")
					}
				}
			}
			if tc.keep && !collected(freed, 250) {
				t.Error("request body still held after the call")
			}
		})
	}
}

// TestLargeBodyReturnsMemory checks that releasing a body of at least
// returnMemoryAbove bytes returns memory to the OS once, and a smaller one
// does not.
func TestLargeBodyReturnsMemory(t *testing.T) {
	var calls atomic.Int32
	old := returnMemory
	returnMemory = func() { calls.Add(1) }
	t.Cleanup(func() { returnMemory = old })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	e, err := New(testOptions(srv.URL, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		size int
		want int32
	}{{returnMemoryAbove - 1, 0}, {returnMemoryAbove, 1}} {
		calls.Store(0)
		resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: http.MethodPost, Path: "x", Body: make([]byte, tc.size)})
		if resp.Status != http.StatusOK {
			t.Fatalf("answer %d (%s)", resp.Status, resp.ErrorMessage)
		}
		if got := calls.Load(); got != tc.want {
			t.Errorf("body of %d bytes: memory returned %d times, want %d", tc.size, got, tc.want)
		}
	}
}

// TestBodyReader checks the reader that drops its slice at the end, used
// for bodies of inPlaceBelow bytes or more; smaller ones are sent through a
// *bytes.Reader, which net/http writes with the headers in one system call.
func TestBodyReader(t *testing.T) {
	small, err := newRequestBody([]byte("hello")).open()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := small.(*bodyReader); ok {
		t.Error("a 5-byte body is read through a bodyReader, want io.NopCloser of a *bytes.Reader")
	}
	want := bytes.Repeat([]byte("hello"), inPlaceBelow/5+1)
	rb := newRequestBody(want)
	r, err := rb.open()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	if br := r.(*bodyReader); br.b != nil {
		t.Error("reader keeps the body after EOF")
	}
	r2, _ := rb.open()
	_ = r2.Close()
	if n, err := r2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after Close: %d, %v; want 0, EOF", n, err)
	}
	rb.release()
	if _, err := rb.open(); err == nil {
		t.Error("open after release succeeded")
	}
	req, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
	if err := newRequestBody(nil).attach(req); err != nil || req.Body != http.NoBody || req.ContentLength != 0 {
		t.Errorf("empty body: %v, Body %v, ContentLength %d", err, req.Body, req.ContentLength)
	}
}

// TestNewRequestAllocations bounds what building an attempt's request
// allocates (each call in flight holds its request): the URL is not parsed
// again and the headers are not copied when the attempt adds none.
func TestNewRequestAllocations(t *testing.T) {
	e, err := New(testOptions("http://127.0.0.1:1/base", 3))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c, refusal := e.prepare(&wire.Request{ID: "job-1", Method: http.MethodPost, Path: "/v1/items/7", RawQuery: "a=1",
		Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}, Body: []byte("{}")})
	if refusal != nil {
		t.Fatal(refusal)
	}
	ctx := context.Background()
	req, err := e.newRequest(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.String(); got != "http://127.0.0.1:1/base/v1/items/7?a=1" || req.Host != "127.0.0.1:1" {
		t.Errorf("URL %s, Host %s", got, req.Host)
	}
	if req.Header.Get("Idempotency-Key") != "job-1" || req.ContentLength != 2 {
		t.Errorf("headers %v, ContentLength %d", req.Header, req.ContentLength)
	}
	// http.Request, its placeholder URL and Header map, the body reader (a
	// *bytes.Reader and its io.NopCloser, which net/http writes in one system
	// call with the headers) and GetBody. Copying the headers and parsing
	// the URL again made it 10.
	const want = 6
	if n := testing.AllocsPerRun(100, func() { _, _ = e.newRequest(ctx, c) }); n > want {
		t.Errorf("newRequest allocates %v times, want at most %d", n, want)
	}
}

// TestLargeChunkedResponseReturnsMemory checks that a large response of
// unknown length, read in blocks and joined, has the blocks collected and
// their memory returned at once.
func TestLargeChunkedResponseReturnsMemory(t *testing.T) {
	var calls atomic.Int32
	old := returnMemory
	returnMemory = func() { calls.Add(1) }
	t.Cleanup(func() { returnMemory = old })
	block := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("mib"))
		for range n {
			_, _ = w.Write(block) // no Content-Length: chunked
		}
	}))
	defer srv.Close()
	opts := testOptions(srv.URL, 1)
	opts.Upstream.MaxResponseBytes = 64 << 20
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		mib  int
		want int32
	}{{1, 0}, {returnMemoryAbove >> 20, 1}} {
		calls.Store(0)
		resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: http.MethodGet, Path: "x", RawQuery: "mib=" + strconv.Itoa(tc.mib)})
		if resp.Status != http.StatusOK || len(resp.Body) != tc.mib<<20 {
			t.Fatalf("answer %d with %d bytes (%s)", resp.Status, len(resp.Body), resp.ErrorMessage)
		}
		if got := calls.Load(); got != tc.want {
			t.Errorf("%d MiB chunked response: memory returned %d times, want %d", tc.mib, got, tc.want)
		}
	}
}

// panickingTokens fails every Token call with a panic.
type panickingTokens struct{}

func (panickingTokens) Token(context.Context) (*oauth2.Token, error) { panic("token source broke") }
func (panickingTokens) Invalidate(*oauth2.Token)                     {}

// TestPanicIsAnsweredInternal checks that a panic during a call becomes an
// internal error answer, reported to the observer, not a crash.
func TestPanicIsAnsweredInternal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	opts := testOptions(srv.URL, 3)
	opts.Tokens = panickingTokens{}
	obs := &kindObserver{}
	opts.Observer = obs
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: http.MethodGet, Path: "x"})
	if resp.ErrorKind != wire.ErrorInternal || resp.Status != http.StatusInternalServerError {
		t.Fatalf("answer %d %q (%s), want 500 internal", resp.Status, resp.ErrorKind, resp.ErrorMessage)
	}
	if got := obs.kinds(); len(got) != 1 || got[0] != wire.ErrorInternal {
		t.Errorf("observer saw %v, want one internal outcome", got)
	}
}

type kindObserver struct {
	NopObserver
	mu   sync.Mutex
	seen []wire.ErrorKind
}

func (o *kindObserver) UpstreamDone(_ string, _ int, kind wire.ErrorKind, _ time.Duration) {
	o.mu.Lock()
	o.seen = append(o.seen, kind)
	o.mu.Unlock()
}

func (o *kindObserver) kinds() []wire.ErrorKind {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]wire.ErrorKind(nil), o.seen...)
}
