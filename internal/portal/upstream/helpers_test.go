package upstream_test

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

// seen is what an upstream handler observed of one request.
type seen struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       string
	Proto      int
	TE         []string
	CL         int64
}

// fakeUpstream is an httptest server that counts and records requests.
type fakeUpstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	reqs []seen
}

func (f *fakeUpstream) last() seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return seen{}
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeUpstream) all() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func record(f *fakeUpstream, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		b := new(strings.Builder)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{
			Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: b.String(),
			Proto: r.ProtoMajor, TE: r.TransferEncoding, CL: r.ContentLength,
		})
		f.mu.Unlock()
		h(w, r)
	})
}

// newUpstream starts a plain-HTTP upstream on loopback.
func newUpstream(t *testing.T, h http.HandlerFunc) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.Server = httptest.NewServer(record(f, h))
	t.Cleanup(f.Close)
	return f
}

// newTLSUpstream starts an HTTPS upstream offering HTTP/2.
func newTLSUpstream(t *testing.T, h http.HandlerFunc) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.Server = httptest.NewUnstartedServer(record(f, h))
	f.EnableHTTP2 = true
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

// writeCA writes the server's certificate as a PEM CA file.
func writeCA(t *testing.T, s *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }

func dur(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// baseOptions are fast test defaults against baseURL.
func baseOptions(baseURL string) upstream.Options {
	return upstream.Options{
		Upstream: config.Upstream{
			BaseURL: baseURL, AllowInsecureHTTP: true,
			MaxRequestBytes: 1 << 20, MaxResponseBytes: 1 << 20,
		},
		Retries: config.Retries{
			Attempts: 3, Backoff: dur(10 * time.Millisecond), MaxBackoff: dur(50 * time.Millisecond),
			OnStatuses: []int{502, 503, 504}, OnConnectionErrors: true,
		},
		Timeouts:    config.Timeouts{Request: dur(5 * time.Second)},
		MaxInFlight: 250,
	}
}

func newExecutor(t *testing.T, opts upstream.Options) *upstream.Executor {
	t.Helper()
	e, err := upstream.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// countingObserver counts events.
type countingObserver struct {
	mu      sync.Mutex
	done    []wire.ErrorKind
	retries map[string]int
	fetches map[bool]int
}

func newObserver() *countingObserver {
	return &countingObserver{retries: map[string]int{}, fetches: map[bool]int{}}
}

func (o *countingObserver) UpstreamDone(_ string, _ int, kind wire.ErrorKind, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = append(o.done, kind)
}

func (o *countingObserver) UpstreamRetry(_, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retries[reason]++
}

func (o *countingObserver) TokenRefreshed(ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fetches[ok]++
}

func (o *countingObserver) retryCount(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.retries[reason]
}

func describe(r *wire.Response) string {
	return fmt.Sprintf("status=%d kind=%q msg=%q body=%q", r.Status, r.ErrorKind, r.ErrorMessage, r.Body)
}
