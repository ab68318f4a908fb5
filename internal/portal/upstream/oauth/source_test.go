package oauth_test

import (
	"context"
	"encoding/json"
	"io"
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

	. "github.com/onsi/gomega"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream/oauth"
)

// tokenEndpoint issues tok-1, tok-2... after delay; it blocks while hold is
// set until the request's context ends.
func tokenEndpoint(t *testing.T, delay time.Duration, hold bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if hold {
			// Reading the body lets the server notice the client leaving.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + strconv.FormatInt(i, 10), "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func credentialFiles(t *testing.T, id, secret string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	idf, sf := filepath.Join(dir, "id"), filepath.Join(dir, "secret")
	if err := os.WriteFile(idf, []byte(id), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sf, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return idf, sf
}

func newSource(t *testing.T, tokenURL string, tune func(*oauth.Options)) *oauth.Source {
	t.Helper()
	idf, sf := credentialFiles(t, "id\n", "secret\r\n")
	o := oauth.Options{Config: config.OAuth{
		TokenURL: tokenURL, ClientIDFile: idf, ClientSecretFile: sf, AuthStyle: "params",
		AllowInsecureHTTP: strings.HasPrefix(tokenURL, "http:"), // loopback test endpoints
	}}
	if tune != nil {
		tune(&o)
	}
	s, err := oauth.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestColdStartIsOneFetch(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, n := tokenEndpoint(t, 100*time.Millisecond, false)
	s := newSource(t, srv.URL, nil)
	const callers = 200
	var wg sync.WaitGroup
	toks := make([]string, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token(context.Background())
			if err == nil {
				toks[i] = tok.AccessToken
			}
		}()
	}
	wg.Wait()
	g.Expect(n.Load()).To(Equal(int64(1)))
	for _, tok := range toks {
		g.Expect(tok).To(Equal("tok-1"))
	}
}

func TestInvalidateOnlyTheCurrentToken(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, n := tokenEndpoint(t, 0, false)
	s := newSource(t, srv.URL, nil)
	ctx := context.Background()

	t1, err := s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	s.Invalidate(t1)
	t2, err := s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(t2.AccessToken).To(Equal("tok-2"))

	s.Invalidate(t1) // a late 401 for the old token
	s.Invalidate(nil)
	t3, err := s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(t3.AccessToken).To(Equal("tok-2"))
	g.Expect(n.Load()).To(Equal(int64(2)))

	s.Invalidate(t2) // within MinRefreshInterval of the previous discard
	t4, err := s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(t4.AccessToken).To(Equal("tok-2"))
	g.Expect(n.Load()).To(Equal(int64(2)))
}

func TestInvalidationsAreRateLimited(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, n := tokenEndpoint(t, 0, false)
	s := newSource(t, srv.URL, func(o *oauth.Options) { o.MinRefreshInterval = 200 * time.Millisecond })
	ctx := context.Background()
	for range 20 {
		tok, err := s.Token(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		s.Invalidate(tok)
	}
	g.Expect(n.Load()).To(Equal(int64(2)), "one initial fetch and one refresh")
	time.Sleep(250 * time.Millisecond)
	tok, err := s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	s.Invalidate(tok)
	tok, err = s.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("tok-3"))
}

func TestCallerContextEndsTheWait(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, _ := tokenEndpoint(t, 0, true)
	s := newSource(t, srv.URL, func(o *oauth.Options) { o.FetchTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Token(ctx)
	g.Expect(err).To(MatchError(ContainSubstring("waiting for an OAuth2 token")))
	g.Expect(err).To(MatchError(context.DeadlineExceeded))
	g.Expect(time.Since(start)).To(BeNumerically("<", 500*time.Millisecond))
}

func TestFetchTimeout(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, _ := tokenEndpoint(t, 0, true)
	s := newSource(t, srv.URL, func(o *oauth.Options) { o.FetchTimeout = 100 * time.Millisecond })
	_, err := s.Token(context.Background())
	var fe *oauth.FetchError
	g.Expect(err).To(BeAssignableToTypeOf(fe))
	g.Expect(err.Error()).To(ContainSubstring(srv.URL))
}

func TestNewRefusesBadSettings(t *testing.T) {
	t.Parallel()
	idf, sf := credentialFiles(t, "id", "secret")
	empty, _ := credentialFiles(t, " \n", "x")
	ok := config.OAuth{TokenURL: "https://token.example/t", ClientIDFile: idf, ClientSecretFile: sf}
	for name, mutate := range map[string]func(*config.OAuth){
		"no token URL":   func(c *config.OAuth) { c.TokenURL = "" },
		"missing file":   func(c *config.OAuth) { c.ClientSecretFile = filepath.Join(t.TempDir(), "nope") },
		"empty file":     func(c *config.OAuth) { c.ClientIDFile = empty },
		"bad auth style": func(c *config.OAuth) { c.AuthStyle = "cookie" },
		"scope param clash": func(c *config.OAuth) {
			c.Scopes = []string{"a"}
			c.EndpointParams = map[string][]string{"scope": {"b"}}
		},
		"secret in params":    func(c *config.OAuth) { c.EndpointParams = map[string][]string{"client_secret": {"b"}} },
		"no credential files": func(c *config.OAuth) { c.ClientIDFile = "" },
		"http without opt-in": func(c *config.OAuth) { c.TokenURL = "http://token.example/t" },
		"relative URL":        func(c *config.OAuth) { c.TokenURL = "/token" },
		"other scheme":        func(c *config.OAuth) { c.TokenURL = "ftp://token.example/t" },
	} {
		c := ok
		mutate(&c)
		if _, err := oauth.New(oauth.Options{Config: c}); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
	if _, err := oauth.New(oauth.Options{Config: ok}); err != nil {
		t.Errorf("New refused a valid configuration: %v", err)
	}
	insecure := ok
	insecure.TokenURL, insecure.AllowInsecureHTTP = "http://token.example/t", true
	if _, err := oauth.New(oauth.Options{Config: insecure}); err != nil {
		t.Errorf("New refused an http token URL with allowInsecureHTTP: %v", err)
	}
}

// TestHTTPTokenURLNeverSeesTheSecret: without the opt-in, an http token
// endpoint is refused when the source is built, so the client secret is
// never sent in clear text, whatever the worker configuration let through.
func TestHTTPTokenURLNeverSeesTheSecret(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	srv, n := tokenEndpoint(t, 0, false)
	idf, sf := credentialFiles(t, "id", "s3cret")
	_, err := oauth.New(oauth.Options{Config: config.OAuth{TokenURL: srv.URL, ClientIDFile: idf, ClientSecretFile: sf}})
	g.Expect(err).To(MatchError(ContainSubstring("http tokenURL is refused unless allowInsecureHTTP")))
	g.Expect(err.Error()).NotTo(ContainSubstring("s3cret"))
	g.Expect(n.Load()).To(BeZero())
}

func TestCredentialsAreTrimmed(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		got = append(got, r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	s := newSource(t, srv.URL, nil)
	_, err := s.Token(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	mu.Lock()
	defer mu.Unlock()
	g.Expect(got).To(Equal([]string{"id", "secret"}))
}
