package upstream_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"kafkasend.io/kafkasend/pkg/wire"
)

// sleepy waits d or until the client goes away.
func sleepy(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			_, _ = w.Write([]byte("late"))
		case <-r.Context().Done():
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, sleepy(5*time.Second))
	opts := baseOptions(up.URL)
	opts.Timeouts.Request = dur(200 * time.Millisecond)
	e := newExecutor(t, opts)
	start := time.Now()
	resp := e.Do(context.Background(), &wire.Request{ID: "slow", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTimeout), describe(resp))
	g.Expect(resp.ErrorMessage).To(ContainSubstring("request timeout"))
	g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
	g.Expect(up.hits.Load()).To(Equal(int64(1)), "a timeout is not retried")
}

func TestJobDeadline(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, sleepy(5*time.Second))
	e := newExecutor(t, baseOptions(up.URL))

	t.Run("ends the call", func(t *testing.T) {
		g := NewWithT(t)
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "d", Method: "GET", Path: "x", Deadline: time.Now().Add(200 * time.Millisecond)})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTimeout), describe(resp))
		g.Expect(resp.ErrorMessage).To(ContainSubstring("deadline"))
		g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
	})
	t.Run("already past: no call", func(t *testing.T) {
		g := NewWithT(t)
		before := up.hits.Load()
		resp := e.Do(context.Background(), &wire.Request{ID: "d", Method: "GET", Path: "x", Deadline: time.Now().Add(-time.Second)})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTimeout), describe(resp))
		g.Expect(resp.Status).To(Equal(http.StatusGatewayTimeout))
		g.Expect(up.hits.Load()).To(Equal(before))
	})
}

// statusSequence answers the given statuses in turn, then 200.
func statusSequence(statuses ...int) (http.HandlerFunc, *atomic.Int64) {
	var n atomic.Int64
	return func(w http.ResponseWriter, _ *http.Request) {
		i := int(n.Add(1)) - 1
		if i < len(statuses) {
			w.WriteHeader(statuses[i])
			_, _ = w.Write([]byte("attempt " + strconv.Itoa(i+1)))
			return
		}
		_, _ = w.Write([]byte("ok after " + strconv.Itoa(i+1)))
	}, &n
}

func TestRetries(t *testing.T) {
	t.Parallel()
	t.Run("GET retried on a listed status", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 502)
		up := newUpstream(t, h)
		obs := newObserver()
		opts := baseOptions(up.URL)
		opts.Observer = obs
		e := newExecutor(t, opts)
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(string(resp.Body)).To(Equal("ok after 3"))
		g.Expect(up.hits.Load()).To(Equal(int64(3)))
		g.Expect(obs.retryCount("status")).To(Equal(2))
		for _, s := range up.all() {
			g.Expect(s.Header.Get("Idempotency-Key")).To(Equal("g"))
		}
	})
	t.Run("attempts bound the retries; last answer returned", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 503, 503, 503)
		up := newUpstream(t, h)
		e := newExecutor(t, baseOptions(up.URL))
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "PUT", Path: "x", Body: []byte("b")})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone))
		g.Expect(resp.Status).To(Equal(http.StatusServiceUnavailable))
		g.Expect(string(resp.Body)).To(Equal("attempt 3"))
		g.Expect(up.hits.Load()).To(Equal(int64(3)))
		for _, s := range up.all() {
			g.Expect(s.Body).To(Equal("b"), "the body is re-sent on every attempt")
		}
	})
	t.Run("unlisted status not retried", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(500)
		up := newUpstream(t, h)
		e := newExecutor(t, baseOptions(up.URL))
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusInternalServerError))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
	})
	t.Run("POST not retried by default", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 503)
		up := newUpstream(t, h)
		e := newExecutor(t, baseOptions(up.URL))
		resp := e.Do(context.Background(), &wire.Request{ID: "p", Method: "POST", Path: "x", Body: []byte("b")})
		g.Expect(resp.Status).To(Equal(http.StatusServiceUnavailable))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
	})
	t.Run("POST retried with nonIdempotent", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 503)
		up := newUpstream(t, h)
		opts := baseOptions(up.URL)
		opts.Retries.NonIdempotent = true
		e := newExecutor(t, opts)
		resp := e.Do(context.Background(), &wire.Request{ID: "p", Method: "POST", Path: "x", Body: []byte("b")})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(up.hits.Load()).To(Equal(int64(3)))
		for _, s := range up.all() {
			g.Expect(s.Body).To(Equal("b"))
			g.Expect(s.Header.Get("Idempotency-Key")).To(Equal("p"))
		}
	})
	t.Run("Retry-After honoured", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		var first time.Time
		var n atomic.Int64
		var mu sync.Mutex
		var gap time.Duration
		up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if n.Add(1) == 1 {
				first = time.Now()
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			gap = time.Since(first)
		})
		opts := baseOptions(up.URL)
		opts.Retries.Backoff = dur(time.Millisecond)
		opts.Retries.MaxBackoff = dur(5 * time.Second)
		e := newExecutor(t, opts)
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		mu.Lock()
		defer mu.Unlock()
		g.Expect(gap).To(BeNumerically(">=", 900*time.Millisecond))
	})
	t.Run("Retry-After over maxRetryAfter (default 60s) is not waited for", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		e := newExecutor(t, baseOptions(up.URL)) // maxBackoff 50ms
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusServiceUnavailable))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
		g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
	})
	t.Run("no retry when the backoff would pass the deadline", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 503)
		up := newUpstream(t, h)
		opts := baseOptions(up.URL)
		opts.Retries.Backoff = dur(time.Second)
		opts.Retries.MaxBackoff = dur(time.Second)
		e := newExecutor(t, opts)
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x", Deadline: time.Now().Add(300 * time.Millisecond)})
		g.Expect(resp.Status).To(Equal(http.StatusServiceUnavailable), describe(resp))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
		g.Expect(time.Since(start)).To(BeNumerically("<", 300*time.Millisecond))
	})
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// hangUpListener accepts connections and closes them at once, counting them.
func hangUpListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String(), &n
}

func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	t.Run("connection refused is retried", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		obs := newObserver()
		opts := baseOptions("http://" + closedPort(t))
		opts.Observer = obs
		e := newExecutor(t, opts)
		resp := e.Do(context.Background(), &wire.Request{ID: "c", Method: "GET", Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
		g.Expect(resp.Status).To(Equal(http.StatusBadGateway))
		g.Expect(resp.ErrorMessage).To(ContainSubstring("refused"))
		g.Expect(obs.retryCount("connection")).To(Equal(2))
	})
	t.Run("hang-up counted at the server", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		addr, n := hangUpListener(t)
		e := newExecutor(t, baseOptions("http://"+addr))
		resp := e.Do(context.Background(), &wire.Request{ID: "c", Method: "DELETE", Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
		g.Expect(n.Load()).To(Equal(int64(3)))
	})
	t.Run("not retried without onConnectionErrors", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		addr, n := hangUpListener(t)
		opts := baseOptions("http://" + addr)
		opts.Retries.OnConnectionErrors = false
		e := newExecutor(t, opts)
		resp := e.Do(context.Background(), &wire.Request{ID: "c", Method: "GET", Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
		g.Expect(n.Load()).To(Equal(int64(1)))
	})
	t.Run("POST not retried", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		addr, n := hangUpListener(t)
		e := newExecutor(t, baseOptions("http://"+addr))
		resp := e.Do(context.Background(), &wire.Request{ID: "c", Method: "POST", Path: "x", Body: []byte("b")})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
		g.Expect(n.Load()).To(Equal(int64(1)))
	})
}

func TestSizeLimits(t *testing.T) {
	t.Parallel()
	const limit = 1024
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("stream") != "" {
			// No Content-Length: the cap must hold while reading.
			chunk := bytes.Repeat([]byte("x"), 4096)
			for i := 0; i < n/len(chunk); i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			return
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	})
	opts := baseOptions(up.URL)
	opts.Upstream.MaxRequestBytes = limit
	opts.Upstream.MaxResponseBytes = limit
	e := newExecutor(t, opts)

	t.Run("response at the limit", func(t *testing.T) {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "s", Method: "GET", Path: "x", RawQuery: "n=1024"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
		g.Expect(resp.Body).To(HaveLen(limit))
	})
	t.Run("response one byte over", func(t *testing.T) {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "s", Method: "GET", Path: "x", RawQuery: "n=1025"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTooLarge), describe(resp))
		g.Expect(resp.Body).To(BeEmpty())
	})
	t.Run("streamed response far over", func(t *testing.T) {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "s", Method: "GET", Path: "x", RawQuery: "n=67108864&stream=1"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTooLarge), describe(resp))
		g.Expect(resp.Body).To(BeEmpty())
	})
	t.Run("request at the limit", func(t *testing.T) {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "s", Method: "POST", Path: "x", Body: make([]byte, limit)})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
		g.Expect(up.last().Body).To(HaveLen(limit))
	})
	t.Run("request over: no call", func(t *testing.T) {
		g := NewWithT(t)
		before := up.hits.Load()
		resp := e.Do(context.Background(), &wire.Request{ID: "s", Method: "POST", Path: "x", Body: make([]byte, limit+1)})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorTooLarge), describe(resp))
		g.Expect(resp.Status).To(Equal(http.StatusRequestEntityTooLarge))
		g.Expect(up.hits.Load()).To(Equal(before))
	})
}

func TestConcurrentCallsAreNotSerialized(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	const calls, latency = 200, 500 * time.Millisecond
	var inFlight, peak atomic.Int64
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		sleepy(latency)(w, r)
		inFlight.Add(-1)
	})
	e := newExecutor(t, baseOptions(up.URL))
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*wire.Response, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "GET", Path: "x"})
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d calls of %s took %s (peak %d in flight at the upstream)", calls, latency, elapsed, peak.Load())
	for i, r := range results {
		g.Expect(r.Status).To(Equal(http.StatusOK), describe(r))
		g.Expect(r.ID).To(Equal(strconv.Itoa(i)))
	}
	g.Expect(elapsed).To(BeNumerically("<", 4*latency), "calls must overlap")
	g.Expect(peak.Load()).To(BeNumerically(">=", calls/2))
}

func TestHTTP2WithCAFile(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newTLSUpstream(t, ok)
	opts := baseOptions(up.URL + "/api")
	opts.Upstream.AllowInsecureHTTP = false
	opts.Upstream.CAFile = writeCA(t, up.Server)
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "h2", Method: "PUT", Path: "x", Body: []byte("b")})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
	g.Expect(up.last().Proto).To(Equal(2))
	g.Expect(up.last().Body).To(Equal("b"))
}

func TestDoNeverReturnsNil(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	e := newExecutor(t, baseOptions("http://"+closedPort(t)))
	resp := e.Do(context.Background(), nil)
	g.Expect(resp).NotTo(BeNil())
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorInternal))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp = e.Do(ctx, &wire.Request{ID: "x", Method: "GET"})
	g.Expect(resp).NotTo(BeNil())
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorInternal))
	g.Expect(resp.ID).To(Equal("x"))
}
