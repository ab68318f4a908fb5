package upstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/internal/portal/upstream/oauth"
	"kafkasend.io/kafkasend/pkg/wire"
)

// tokenCall is what the token server saw of one token request.
type tokenCall struct {
	ID, Secret string
	Basic      bool
	Form       map[string][]string
}

// tokenServer is a client-credentials endpoint issuing tok-1, tok-2, ...
type tokenServer struct {
	*httptest.Server
	requests  atomic.Int64
	expiresIn int
	delay     time.Duration
	// failWith, when not zero, is the status answered instead of a token.
	failWith atomic.Int32
	mu       sync.Mutex
	calls    []tokenCall
}

func newTokenServer(t *testing.T, expiresIn int, delay time.Duration, tls bool) *tokenServer {
	t.Helper()
	ts := &tokenServer{expiresIn: expiresIn, delay: delay}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := tokenCall{Form: r.PostForm}
		if id, secret, ok := r.BasicAuth(); ok {
			c.ID, c.Secret, c.Basic = id, secret, true
		} else {
			c.ID, c.Secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		ts.mu.Lock()
		ts.calls = append(ts.calls, c)
		ts.mu.Unlock()
		time.Sleep(ts.delay)
		if s := ts.failWith.Load(); s != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(int(s))
			// A hostile or careless endpoint echoing the credentials.
			_, _ = fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, c.Secret)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "tok-" + strconv.FormatInt(n, 10), "token_type": "Bearer", "expires_in": ts.expiresIn,
		})
	})
	if tls {
		ts.Server = httptest.NewTLSServer(h)
	} else {
		ts.Server = httptest.NewServer(h)
	}
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) lastCall() tokenCall {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.calls[len(ts.calls)-1]
}

// secretVolume mimics a Kubernetes Secret volume: files are symlinks into
// ..data, itself a symlink to a timestamped directory swapped atomically.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T, id, secret string) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.write(id, secret)
	for _, f := range []string{"client-id", "client-secret"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(v.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) write(id, secret string) {
	v.n++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", v.n, v.n)
	must := func(err error) {
		if err != nil {
			v.t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(v.dir, ts), 0o700))
	must(os.WriteFile(filepath.Join(v.dir, ts, "client-id"), []byte(id+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(v.dir, ts, "client-secret"), []byte(secret+"\n"), 0o600))
	must(os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")))
	must(os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
}

func (v *secretVolume) oauthConfig(tokenURL string) *config.OAuth {
	return &config.OAuth{
		TokenURL:         tokenURL,
		ClientIDFile:     filepath.Join(v.dir, "client-id"),
		ClientSecretFile: filepath.Join(v.dir, "client-secret"),
		// The test token endpoints are loopback servers, mostly plain HTTP.
		AllowInsecureHTTP: strings.HasPrefix(tokenURL, "http:"),
	}
}

// bearerUpstream accepts the bearer tokens for which accept returns true.
func bearerUpstream(t *testing.T, accept func(tok string) bool) *fakeUpstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found || !accept(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("token refused"))
			return
		}
		_, _ = w.Write([]byte("hello " + tok))
	})
}

func oauthOptions(up *fakeUpstream, vol *secretVolume, ts *tokenServer) upstream.Options {
	opts := baseOptions(up.URL)
	opts.OAuth = vol.oauthConfig(ts.URL + "/token")
	opts.OAuthTuning = oauth.Options{EarlyExpiry: time.Millisecond, FailureHoldoff: -1}
	return opts
}

func TestOneTokenRequestAcrossExpiry(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 1, 100*time.Millisecond, false)
	up := bearerUpstream(t, func(string) bool { return true })
	obs := newObserver()
	opts := oauthOptions(up, newSecretVolume(t, "id", "s3cr3t"), ts)
	opts.Observer = obs
	e := newExecutor(t, opts)

	resp := e.Do(context.Background(), &wire.Request{ID: "first", Method: "GET", Path: "x"})
	g.Expect(string(resp.Body)).To(Equal("hello tok-1"), describe(resp))
	time.Sleep(1100 * time.Millisecond) // tok-1 expires

	const calls = 200
	var wg sync.WaitGroup
	bodies := make([]string, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = string(e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "GET", Path: "x"}).Body)
		}()
	}
	wg.Wait()
	g.Expect(ts.requests.Load()).To(Equal(int64(2)), "one token request for the first call, one for the 200 at expiry")
	for _, b := range bodies {
		g.Expect(b).To(Equal("hello tok-2"))
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	g.Expect(obs.fetches).To(Equal(map[bool]int{true: 2}))
}

func TestUnauthorizedRefreshesOnceAndRetries(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 50*time.Millisecond, false)
	up := bearerUpstream(t, func(tok string) bool { return tok != "tok-1" }) // tok-1 was revoked
	obs := newObserver()
	opts := oauthOptions(up, newSecretVolume(t, "id", "s3cr3t"), ts)
	opts.Observer = obs
	e := newExecutor(t, opts)

	const calls = 50
	var wg sync.WaitGroup
	resps := make([]*wire.Response, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// POST: a 401 is retried whatever the method.
			resps[i] = e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "POST", Path: "x", Body: []byte("b")})
		}()
	}
	wg.Wait()
	for _, r := range resps {
		g.Expect(r.Status).To(Equal(http.StatusOK), describe(r))
		g.Expect(string(r.Body)).To(Equal("hello tok-2"))
	}
	g.Expect(ts.requests.Load()).To(Equal(int64(2)), "concurrent 401s for one token cause one refresh")
	g.Expect(up.hits.Load()).To(BeNumerically("<=", 2*calls))
	g.Expect(obs.retryCount("unauthorized")).To(BeNumerically(">=", 1))
}

func TestSecond401IsAnAuthError(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false)
	up := bearerUpstream(t, func(string) bool { return false })
	e := newExecutor(t, oauthOptions(up, newSecretVolume(t, "id", "s3cr3t"), ts))

	resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorAuth), describe(resp))
	g.Expect(resp.Status).To(Equal(http.StatusUnauthorized))
	g.Expect(string(resp.Body)).To(Equal("token refused"))
	g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring("invalid_token"))
	g.Expect(up.hits.Load()).To(Equal(int64(2)))
	g.Expect(ts.requests.Load()).To(Equal(int64(2)))
}

func TestUpstreamRefusingEveryTokenDoesNotHammerTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false)
	up := bearerUpstream(t, func(string) bool { return false })
	e := newExecutor(t, oauthOptions(up, newSecretVolume(t, "id", "s3cr3t"), ts))
	for i := range 10 {
		resp := e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "GET", Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorAuth), describe(resp))
	}
	g.Expect(up.hits.Load()).To(Equal(int64(20)), "each job is tried twice")
	g.Expect(ts.requests.Load()).To(Equal(int64(2)), "at most one refresh per second")
}

func TestRotatedSecretIsPickedUp(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false)
	up := bearerUpstream(t, func(string) bool { return true })
	vol := newSecretVolume(t, "id-1", "secret-1")
	opts := oauthOptions(up, vol, ts)
	opts.OAuthTuning.RecheckInterval = -1 // re-read on every call
	e := newExecutor(t, opts)

	resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
	g.Expect(string(resp.Body)).To(Equal("hello tok-1"), describe(resp))
	g.Expect(ts.lastCall()).To(HaveField("Secret", "secret-1"))

	resp = e.Do(context.Background(), &wire.Request{ID: "b", Method: "GET", Path: "x"})
	g.Expect(string(resp.Body)).To(Equal("hello tok-1"), "unchanged files keep the token")
	g.Expect(ts.requests.Load()).To(Equal(int64(1)))

	vol.write("id-2", "secret-2")
	resp = e.Do(context.Background(), &wire.Request{ID: "c", Method: "GET", Path: "x"})
	g.Expect(string(resp.Body)).To(Equal("hello tok-2"), "a rotation discards the cached token")
	g.Expect(ts.lastCall()).To(And(HaveField("ID", "id-2"), HaveField("Secret", "secret-2")))
}

func TestTokenEndpointDown(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := bearerUpstream(t, func(string) bool { return true })
	vol := newSecretVolume(t, "id", "s3cr3t-value")
	opts := baseOptions(up.URL)
	opts.OAuth = vol.oauthConfig("http://" + closedPort(t) + "/token")
	e := newExecutor(t, opts)

	resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorAuth), describe(resp))
	g.Expect(resp.Status).To(Equal(http.StatusBadGateway))
	g.Expect(resp.ErrorMessage).To(ContainSubstring("OAuth2 token"))
	g.Expect(resp.ErrorMessage).NotTo(ContainSubstring("s3cr3t-value"))
	g.Expect(up.hits.Load()).To(BeZero())
}

func TestFailingTokenEndpointIsNotHammered(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 20*time.Millisecond, false)
	ts.failWith.Store(http.StatusUnauthorized)
	up := bearerUpstream(t, func(string) bool { return true })
	opts := oauthOptions(up, newSecretVolume(t, "id", "s3cr3t-value"), ts)
	opts.OAuthTuning.FailureHoldoff = 10 * time.Second
	// Auto-detection would try a second style after a failure; fix the style
	// so that one fetch is one request.
	opts.OAuth.AuthStyle = "header"
	e := newExecutor(t, opts)

	const calls = 50
	var wg sync.WaitGroup
	resps := make([]*wire.Response, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i] = e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "GET", Path: "x"})
		}()
	}
	wg.Wait()
	for _, r := range resps {
		g.Expect(r.ErrorKind).To(Equal(wire.ErrorAuth), describe(r))
		g.Expect(r.ErrorMessage).To(ContainSubstring("401"))
		g.Expect(r.ErrorMessage).To(ContainSubstring("invalid_client"))
		g.Expect(r.ErrorMessage).NotTo(ContainSubstring("s3cr3t-value"), "the echoed body must not leak")
	}
	g.Expect(ts.requests.Load()).To(Equal(int64(1)))
	g.Expect(up.hits.Load()).To(BeZero())
}

func TestTokenRequestParameters(t *testing.T) {
	t.Parallel()
	for _, style := range []string{"header", "params"} {
		t.Run(style, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			ts := newTokenServer(t, 3600, 0, false)
			up := bearerUpstream(t, func(string) bool { return true })
			opts := oauthOptions(up, newSecretVolume(t, "the-id", "the-secret"), ts)
			opts.OAuth.AuthStyle = style
			opts.OAuth.Scopes = []string{"read", "write"}
			opts.OAuth.EndpointParams = map[string][]string{"audience": {"https://api.example"}}
			e := newExecutor(t, opts)
			resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
			g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
			c := ts.lastCall()
			g.Expect(c.ID).To(Equal("the-id"))
			g.Expect(c.Secret).To(Equal("the-secret"))
			g.Expect(c.Basic).To(Equal(style == "header"))
			g.Expect(c.Form["grant_type"]).To(Equal([]string{"client_credentials"}))
			g.Expect(c.Form["scope"]).To(Equal([]string{"read write"}))
			g.Expect(c.Form["audience"]).To(Equal([]string{"https://api.example"}))
		})
	}
}

func TestTokenEndpointUsesTheUpstreamCA(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, true)
	up := newTLSUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Header.Get("Authorization")))
	})
	opts := oauthOptions(up, newSecretVolume(t, "id", "secret"), ts)
	opts.Upstream.AllowInsecureHTTP = false
	// httptest servers share one certificate: the upstream's CA file
	// also vouches for the token endpoint.
	opts.Upstream.CAFile = writeCA(t, up.Server)
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
	g.Expect(string(resp.Body)).To(Equal("Bearer tok-1"))
}

func TestSecretsAndTokensAreNeverLogged(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var mu sync.Mutex
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})

	ts := newTokenServer(t, 3600, 0, false)
	up := bearerUpstream(t, func(tok string) bool { return tok != "tok-1" })
	vol := newSecretVolume(t, "the-client-id", "the-secret-1")
	opts := oauthOptions(up, vol, ts)
	opts.Log = log
	opts.OAuthTuning.RecheckInterval = -1
	e := newExecutor(t, opts)

	e.Do(context.Background(), &wire.Request{ID: "a", Method: "GET", Path: "x"}) // 401, refresh, retry
	vol.write("the-client-id", "the-secret-2")                                   // rotation
	e.Do(context.Background(), &wire.Request{ID: "b", Method: "GET", Path: "x"})
	ts.failWith.Store(http.StatusUnauthorized) // failure echoing the secret
	vol.write("the-client-id", "the-secret-3")
	resp := e.Do(context.Background(), &wire.Request{ID: "c", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorAuth), describe(resp))
	e.Do(context.Background(), &wire.Request{ID: "d", Method: "GET", Path: "../x"}) // refused

	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	g.Expect(out).To(ContainSubstring("credentials changed"), "the log was captured")
	for _, s := range []string{"the-secret-1", "the-secret-2", "the-secret-3", "tok-1", "tok-2", "tok-3"} {
		g.Expect(out).NotTo(ContainSubstring(s))
	}
}
