package upstream_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

// echoUpstream answers every request with the request it received, headers
// included, as RFC 9110 describes for TRACE (and careless debug endpoints
// do for any method).
func echoUpstream(t *testing.T) *fakeUpstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		dump, _ := httputil.DumpRequest(r, false)
		w.Header().Set("Content-Type", "message/http")
		_, _ = w.Write(dump)
	})
}

func TestTraceCannotLeakTheBearerToken(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false)
	up := echoUpstream(t)
	vol := newSecretVolume(t, "id", "secret")
	e := newExecutor(t, oauthOptions(up, vol, ts))

	// The echo does carry the token: what a TRACE would hand the requester.
	resp := e.Do(context.Background(), &wire.Request{ID: "get", Method: "GET", Path: "x"})
	g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
	g.Expect(string(resp.Body)).To(ContainSubstring("Authorization: Bearer tok-1"))

	for _, m := range []string{"TRACE", "CONNECT"} {
		before := up.hits.Load()
		resp := e.Do(context.Background(), &wire.Request{ID: "t", Method: m, Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorRejected), m+": "+describe(resp))
		g.Expect(resp.Status).To(Equal(http.StatusForbidden))
		g.Expect(resp.ErrorMessage).To(ContainSubstring("method " + m + " is not allowed"))
		g.Expect(string(resp.Body)).NotTo(ContainSubstring("Bearer"))
		g.Expect(up.hits.Load()).To(Equal(before), m+" must not reach the upstream")
	}
}

func TestExecutorRefusesAnHTTPTokenURL(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false)
	up := newUpstream(t, ok)
	vol := newSecretVolume(t, "id", "secret")
	opts := oauthOptions(up, vol, ts)
	opts.OAuth.AllowInsecureHTTP = false
	_, err := upstream.New(opts)
	g.Expect(err).To(MatchError(ContainSubstring("http tokenURL is refused unless allowInsecureHTTP")))
	g.Expect(ts.requests.Load()).To(BeZero())

	opts.OAuth.AllowInsecureHTTP = true
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
	g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
}

// overrideSamples are the override headers of docs/security.md, with a
// value each.
var overrideSamples = map[string]string{
	"X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Override-URL": "/admin", "X-Original-URI": "/admin",
	"X-Envoy-Original-Path":  "/admin",
	"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE",
	"Forwarded": "for=10.0.0.1;host=internal", "X-Forwarded": "for=10.0.0.1", "X-Forwarded-For": "10.0.0.1",
	"X-Forwarded-Host": "internal", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443",
	"X-Forwarded-Prefix": "/admin", "X-Forwarded-Server": "internal", "X-Host": "internal",
	"X-Original-Host": "internal", "X-Original-Forwarded-For": "10.0.0.1",
	"X-Real-IP": "10.0.0.1", "X-Client-IP": "10.0.0.1", "True-Client-IP": "10.0.0.1", "X-ProxyUser-Ip": "10.0.0.1",
	"X-Originating-IP": "10.0.0.1", "X-Remote-IP": "10.0.0.1", "X-Remote-Addr": "10.0.0.1",
	"X-Cluster-Client-IP": "10.0.0.1", "Client-IP": "10.0.0.1", "CF-Connecting-IP": "10.0.0.1",
	"Fastly-Client-IP": "10.0.0.1",
}

func TestOverrideHeadersAreDroppedByDefault(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, ok)
	e := newExecutor(t, baseOptions(up.URL))
	h := http.Header{"X-Kept": {"yes"}}
	for k, v := range overrideSamples {
		h[k] = []string{v} // as a job's JSON carries them: any case
	}
	resp := e.Do(context.Background(), &wire.Request{ID: "o", Method: "GET", Path: "x", Header: h})
	g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
	got := up.last().Header
	g.Expect(got.Get("X-Kept")).To(Equal("yes"))
	for k := range overrideSamples {
		g.Expect(got.Values(k)).To(BeEmpty(), k+" must be dropped")
	}
}

func TestForwardHeadersAllowList(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, ok)
	opts := baseOptions(up.URL)
	opts.Upstream.ForwardHeaders = []string{"x-forwarded-for", "Forwarded"}
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "o", Method: "GET", Path: "x", Header: http.Header{
		"X-Forwarded-For": {"10.0.0.1"}, "Forwarded": {"for=10.0.0.1"}, "X-Forwarded-Host": {"internal"},
		"X-Http-Method-Override": {"DELETE"},
	}})
	g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
	got := up.last().Header
	g.Expect(got.Values("X-Forwarded-For")).To(Equal([]string{"10.0.0.1"}))
	g.Expect(got.Values("Forwarded")).To(Equal([]string{"for=10.0.0.1"}))
	g.Expect(got.Values("X-Forwarded-Host")).To(BeEmpty())
	g.Expect(got.Values("X-Http-Method-Override")).To(BeEmpty())

	opts.Upstream.ForwardHeaders = []string{"bad header"}
	_, err := upstream.New(opts)
	g.Expect(err).To(MatchError(ContainSubstring("upstream.forwardHeaders")))
}

// headerVolume is a Secret volume with one key, swapped like the kubelet does.
type headerVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newHeaderVolume(t *testing.T, key, value string) *headerVolume {
	v := &headerVolume{t: t, dir: t.TempDir()}
	v.write(key, value)
	if err := os.Symlink(filepath.Join("..data", key), filepath.Join(v.dir, key)); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *headerVolume) write(key, value string) {
	v.n++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", v.n, v.n)
	for _, err := range []error{
		os.Mkdir(filepath.Join(v.dir, ts), 0o700),
		os.WriteFile(filepath.Join(v.dir, ts, key), []byte(value), 0o600),
		os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")),
		os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")),
	} {
		if err != nil {
			v.t.Fatal(err)
		}
	}
}

func TestHeaderFilesWinAndRotate(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var mu sync.Mutex
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})

	up := newUpstream(t, ok)
	vol := newHeaderVolume(t, "api-key", "key-one\n")
	opts := baseOptions(up.URL)
	opts.Log = log
	opts.Upstream.Headers = map[string]string{"X-Api-Key": "static", "X-Tenant": "t1"}
	opts.Upstream.HeaderFiles = map[string]string{"x-api-key": filepath.Join(vol.dir, "api-key")}
	opts.HeaderRecheckInterval = -1 // on every attempt: the test need not wait
	e := newExecutor(t, opts)

	call := func() http.Header {
		resp := e.Do(context.Background(), &wire.Request{ID: "h", Method: "GET", Path: "x",
			Header: http.Header{"X-Api-Key": {"from-the-job"}}})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		return up.last().Header
	}
	h := call()
	g.Expect(h.Values("X-Api-Key")).To(Equal([]string{"key-one"}), "the file wins over static and job headers")
	g.Expect(h.Get("X-Tenant")).To(Equal("t1"))

	vol.write("api-key", "key-two")
	g.Expect(call().Values("X-Api-Key")).To(Equal([]string{"key-two"}), "a rotated Secret is picked up without a restart")

	// A broken update (empty, or a value with a line break) keeps the last good value.
	vol.write("api-key", "")
	g.Expect(call().Values("X-Api-Key")).To(Equal([]string{"key-two"}))
	vol.write("api-key", "key\nthree")
	g.Expect(call().Values("X-Api-Key")).To(Equal([]string{"key-two"}))
	vol.write("api-key", "key-four")
	g.Expect(call().Values("X-Api-Key")).To(Equal([]string{"key-four"}))

	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	g.Expect(out).To(ContainSubstring("Upstream header value changed"), "the log was captured")
	for _, s := range []string{"key-one", "key-two", "key-four", "three"} {
		g.Expect(out).NotTo(ContainSubstring(s), "header values are never logged")
	}
}

func TestHeaderFilesAreValidated(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(good, []byte("v"), 0o600)
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	for name, files := range map[string]map[string]string{
		"missing file":   {"X-Key": filepath.Join(dir, "nope")},
		"empty file":     {"X-Key": empty},
		"host":           {"Host": good},
		"hop-by-hop":     {"Connection": good},
		"idempotency":    {"Idempotency-Key": good},
		"invalid name":   {"X Key": good},
		"no path":        {"X-Key": ""},
		"authz vs oauth": {"Authorization": good},
	} {
		opts := baseOptions(up.URL)
		opts.Upstream.HeaderFiles = files
		if name == "authz vs oauth" {
			opts.Tokens = staticTokens{}
		}
		if _, err := upstream.New(opts); err == nil || !strings.Contains(err.Error(), "upstream.headerFiles") {
			t.Errorf("%s: New returned %v, want an upstream.headerFiles error", name, err)
		} else if strings.Contains(err.Error(), "\nv") {
			t.Errorf("%s: error shows the value: %v", name, err)
		}
	}
}

func retryAfterSequence(first int, retryAfter string) http.HandlerFunc {
	var mu sync.Mutex
	n := 0
	return func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		if i == 1 {
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(first)
			_, _ = w.Write([]byte("slow down"))
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
}

func retryAfterOptions(url string) upstream.Options {
	opts := baseOptions(url)
	opts.Retries = config.Default().Retries // 429 listed, maxRetryAfter 60s
	opts.Retries.Backoff, opts.Retries.MaxBackoff = dur(10*time.Millisecond), dur(50*time.Millisecond)
	return opts
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	t.Run("429 retried by default after the server's delay in seconds, also for POST", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, retryAfterSequence(http.StatusTooManyRequests, "1"))
		e := newExecutor(t, retryAfterOptions(up.URL))
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "p", Method: "POST", Path: "x", Body: []byte("b")})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(up.hits.Load()).To(Equal(int64(2)))
		g.Expect(time.Since(start)).To(BeNumerically(">=", 950*time.Millisecond), "waited Retry-After, not the 50ms backoff cap")
	})
	t.Run("503 with an HTTP date", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		when := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second)
		up := newUpstream(t, retryAfterSequence(http.StatusServiceUnavailable, when.Format(http.TimeFormat)))
		e := newExecutor(t, retryAfterOptions(up.URL))
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(time.Now()).To(BeTemporally(">=", when.Add(-50*time.Millisecond)))
	})
	t.Run("a wait over maxRetryAfter returns the answer at once", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, retryAfterSequence(http.StatusTooManyRequests, "120"))
		opts := retryAfterOptions(up.URL)
		opts.Retries.MaxRetryAfter = dur(30 * time.Second)
		e := newExecutor(t, opts)
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusTooManyRequests), describe(resp))
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), "the upstream's own answer")
		g.Expect(string(resp.Body)).To(Equal("slow down"))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
		g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second), "not the 30s cap, not 120s")
	})
	t.Run("a wait past the job's deadline returns the answer at once", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, retryAfterSequence(http.StatusTooManyRequests, "50"))
		e := newExecutor(t, retryAfterOptions(up.URL)) // cap 60s
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x", Deadline: time.Now().Add(20 * time.Second)})
		g.Expect(resp.Status).To(Equal(http.StatusTooManyRequests), describe(resp))
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
		g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second), "answered at once, not at the 20s deadline")
	})
	t.Run("Retry-After on a status other than 429 and 503 is not a delay", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, retryAfterSequence(http.StatusBadGateway, "30"))
		e := newExecutor(t, retryAfterOptions(up.URL))
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "g", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(time.Since(start)).To(BeNumerically("<", 15*time.Second), "the 50ms backoff, not 30s")
	})
}

func TestRateLimitIsSharedByCallsAndRetries(t *testing.T) {
	t.Parallel()
	t.Run("calls", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, ok)
		opts := baseOptions(up.URL)
		opts.Upstream.RateLimit = &config.RateLimit{RequestsPerSecond: 20, Burst: 1}
		e := newExecutor(t, opts)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 11 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp := e.Do(context.Background(), &wire.Request{ID: fmt.Sprint("r", i), Method: "GET", Path: "x"})
				g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
			}()
		}
		wg.Wait()
		// 11 calls at 20/s with a burst of 1: at least 10 intervals of 50ms.
		g.Expect(time.Since(start)).To(BeNumerically(">=", 480*time.Millisecond))
		g.Expect(up.hits.Load()).To(Equal(int64(11)))
	})
	t.Run("retries", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		h, _ := statusSequence(503, 503)
		up := newUpstream(t, h)
		opts := baseOptions(up.URL)
		opts.Upstream.RateLimit = &config.RateLimit{RequestsPerSecond: 4, Burst: 1}
		e := newExecutor(t, opts)
		start := time.Now()
		resp := e.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "x"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(time.Since(start)).To(BeNumerically(">=", 480*time.Millisecond), "3 attempts at 4/s")
	})
	t.Run("no room before the deadline", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		up := newUpstream(t, ok)
		opts := baseOptions(up.URL)
		opts.Upstream.RateLimit = &config.RateLimit{RequestsPerSecond: 0.02, Burst: 1}
		e := newExecutor(t, opts)
		first := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
		g.Expect(first.Status).To(Equal(http.StatusOK), describe(first))
		start := time.Now()
		second := e.Do(context.Background(), &wire.Request{ID: "b", Method: "GET", Path: "x", Deadline: time.Now().Add(10 * time.Second)})
		g.Expect(second.ErrorKind).To(Equal(wire.ErrorTimeout), describe(second))
		g.Expect(second.Status).To(Equal(http.StatusGatewayTimeout))
		g.Expect(second.ErrorMessage).To(ContainSubstring("rate limit"))
		g.Expect(time.Since(start)).To(BeNumerically("<", 8*time.Second), "answered at once, not at the 10s deadline")
		g.Expect(up.hits.Load()).To(Equal(int64(1)))
	})
}

// staticTokens is a TokenSource with one fixed token.
type staticTokens struct{}

func (staticTokens) Token(context.Context) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: "fixed", TokenType: "Bearer"}, nil
}

func (staticTokens) Invalidate(*oauth2.Token) {}

// TestHeaderFilesAreReReadOnTheInterval: with the default-style interval a
// rotation shows up within it, not on the next call.
func TestHeaderFilesAreReReadOnTheInterval(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, ok)
	vol := newHeaderVolume(t, "api-key", "old")
	opts := baseOptions(up.URL)
	opts.Upstream.HeaderFiles = map[string]string{"X-Api-Key": filepath.Join(vol.dir, "api-key")}
	opts.HeaderRecheckInterval = 300 * time.Millisecond
	e := newExecutor(t, opts)
	get := func() string {
		e.Do(context.Background(), &wire.Request{ID: "h", Method: "GET", Path: "x"})
		return up.last().Header.Get("X-Api-Key")
	}
	g.Expect(get()).To(Equal("old"))
	vol.write("api-key", "new")
	g.Eventually(get, 10*time.Second, 50*time.Millisecond).Should(Equal("new"))
}
