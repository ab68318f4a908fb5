package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kafkasend.io/kafkasend/internal/portal/config"
)

// upstreamPathPrefix is the path of every bench job: /job/{delay in ms}.
const upstreamPathPrefix = "/job/"

// jobPath is the upstream path that answers after delay.
func jobPath(delay time.Duration) string {
	return upstreamPathPrefix + strconv.FormatInt(delay.Milliseconds(), 10)
}

// upstream is the loopback HTTP API the portal calls: it waits the delay
// named by the path, then echoes the request body. It counts concurrent
// calls and records, per Idempotency-Key (the job ID), how long it took to
// handle the call, so that the portal's own overhead can be separated from
// the upstream's latency.
type upstream struct {
	srv *http.Server
	ln  net.Listener
	url string
	// h2c: the server also speaks HTTP/2 without TLS, and portals are
	// configured to call it so (upstream.http2 "always").
	h2c bool

	active, peak, total atomic.Int64

	mu      sync.Mutex
	handled map[string]time.Duration
	// Per job ID: executions started (with their times) and cancelled.
	starts    map[string][]time.Time
	cancelled map[string]int
	done      chan struct{}
}

// resetExecutions forgets the executions counted so far.
func (u *upstream) resetExecutions() {
	u.mu.Lock()
	u.starts, u.cancelled = map[string][]time.Time{}, map[string]int{}
	u.mu.Unlock()
}

// executions returns, per job ID, how many calls started, how many were
// cancelled before the upstream answered, and when each started.
func (u *upstream) executions() (execs, cancels map[string]int, starts map[string][]time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	execs = make(map[string]int, len(u.starts))
	starts = make(map[string][]time.Time, len(u.starts))
	for id, ts := range u.starts {
		execs[id] = len(ts)
		starts[id] = append([]time.Time(nil), ts...)
	}
	cancels = make(map[string]int, len(u.cancelled))
	for id, n := range u.cancelled {
		cancels[id] = n
	}
	return execs, cancels, starts
}

// startUpstream listens on 127.0.0.1 and serves until close: HTTP/1.1, and
// with h2c also HTTP/2 with prior knowledge on the same port (at Go's
// default of 250 streams per connection).
func startUpstream(h2c bool) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the upstream: %w", err)
	}
	u := &upstream{ln: ln, url: "http://" + ln.Addr().String(), h2c: h2c, handled: map[string]time.Duration{}, done: make(chan struct{})}
	u.resetExecutions()
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 30 * time.Second}
	if h2c {
		u.srv.Protocols = new(http.Protocols)
		u.srv.Protocols.SetHTTP1(true)
		u.srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go func() {
		defer close(u.done)
		_ = u.srv.Serve(ln)
	}()
	return u, nil
}

// ServeHTTP implements http.Handler.
func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	n := u.active.Add(1)
	defer u.active.Add(-1)
	u.total.Add(1)
	for {
		p := u.peak.Load()
		if n <= p || u.peak.CompareAndSwap(p, n) {
			break
		}
	}
	ms, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, upstreamPathPrefix))
	if !strings.HasPrefix(r.URL.Path, upstreamPathPrefix) || err != nil || ms < 0 {
		http.Error(w, "want /job/{delay ms}", http.StatusNotFound)
		return
	}
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("Idempotency-Key")
	if id != "" {
		u.mu.Lock()
		u.starts[id] = append(u.starts[id], start)
		u.mu.Unlock()
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
		if id != "" {
			u.mu.Lock()
			u.cancelled[id]++
			u.mu.Unlock()
		}
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	if id != "" {
		elapsed := time.Since(start)
		u.mu.Lock()
		u.handled[id] = elapsed
		u.mu.Unlock()
	}
}

// readBody reads the whole request body, sized by Content-Length when known.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		return b, nil
	}
	b := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	return b, nil
}

// portalHTTP2 is the upstream.http2 setting of the portals that call u.
func (u *upstream) portalHTTP2() string {
	if u.h2c {
		return config.HTTP2Always
	}
	return ""
}

// handledTime returns how long the upstream spent on job id.
func (u *upstream) handledTime(id string) (time.Duration, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	d, ok := u.handled[id]
	return d, ok
}

// close stops the server, cutting open connections.
func (u *upstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := u.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = u.srv.Close()
	}
	<-u.done
}
