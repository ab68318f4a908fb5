// Package oauth supplies the portal's OAuth2 client-credentials token: one
// token shared by every concurrent upstream call, fetched with
// golang.org/x/oauth2/clientcredentials.
//
// Behaviour:
//   - Single flight: the cached token lives in an oauth2.ReuseTokenSource,
//     whose mutex is held while a token is fetched, so any number of callers
//     arriving at expiry cause one request to the token endpoint.
//   - Invalidation: Invalidate(tok) discards the cached token only when it is
//     still tok, so N concurrent 401s for the same token cause one refresh;
//     and at most once per MinRefreshInterval, so an upstream that refuses
//     every token does not make every job fetch a new one.
//   - Rotation: the client ID and secret are read from mounted files and
//     re-read (at most once per RecheckInterval, on a Token call); a change
//     discards the cached token. Kubernetes Secret volumes swap a `..data`
//     symlink, so reading the content (not watching a path) is enough.
//   - Failures: a failed fetch is remembered for FailureHoldoff; callers in
//     that window get the same error without a new request, so a failing
//     token endpoint is not hammered.
//   - Secrets and tokens are never logged nor put into error messages.
package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"

	"kafkasend.io/kafkasend/internal/portal/config"
)

// Defaults of the tunables in Options.
const (
	DefaultEarlyExpiry     = 10 * time.Second
	DefaultRecheckInterval = 2 * time.Second
	DefaultFailureHoldoff  = 2 * time.Second
	DefaultFetchTimeout    = 30 * time.Second
	DefaultMinRefresh      = time.Second
)

// maxCredentialFileBytes bounds what is read from a credential file.
const maxCredentialFileBytes = 64 << 10

// Options configure a Source.
type Options struct {
	// Config is the oauth section of the portal configuration.
	Config config.OAuth
	// HTTPClient calls the token endpoint; it should carry the same TLS roots
	// as the upstream client. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Log receives token lifecycle events (never a secret or a token).
	Log logr.Logger
	// OnFetch, when set, is called after every request to the token endpoint
	// with whether it produced a token.
	OnFetch func(ok bool)
	// EarlyExpiry refreshes a token this long before it expires
	// (default DefaultEarlyExpiry).
	EarlyExpiry time.Duration
	// RecheckInterval is how often the credential files are re-read
	// (default DefaultRecheckInterval; negative means on every Token call).
	RecheckInterval time.Duration
	// FailureHoldoff is how long a token endpoint failure is served from
	// cache before the endpoint is asked again (default DefaultFailureHoldoff;
	// negative disables the hold-off).
	FailureHoldoff time.Duration
	// FetchTimeout bounds one request to the token endpoint
	// (default DefaultFetchTimeout).
	FetchTimeout time.Duration
	// MinRefreshInterval is the least time between two invalidations that
	// discard a token (default DefaultMinRefresh; negative means no limit).
	MinRefreshInterval time.Duration
}

// Source is a concurrency-safe supplier of the shared token.
type Source struct {
	opts   Options
	client *http.Client
	log    logr.Logger
	style  oauth2.AuthStyle
	// invalidations limits how often Invalidate discards a token.
	invalidations *rate.Limiter

	mu        sync.Mutex
	cur       *generation
	credsHash [sha256.Size]byte
	lastCheck time.Time

	failMu    sync.Mutex
	failUntil time.Time
	failErr   error
}

// generation is one cached token lineage: a ReuseTokenSource over one set of
// credentials. Invalidation and rotation replace the generation.
type generation struct {
	ts    oauth2.TokenSource
	fetch *fetcher
	// last is the access token most recently handed out by ts (guarded by
	// Source.mu); Invalidate compares against it.
	last string
}

// New checks the configuration, reads the credential files once and returns
// a Source. It does not contact the token endpoint.
func New(opts Options) (*Source, error) {
	c := opts.Config
	if c.TokenURL == "" {
		return nil, errors.New("creating OAuth2 token source: tokenURL is required")
	}
	if c.ClientIDFile == "" || c.ClientSecretFile == "" {
		return nil, errors.New("creating OAuth2 token source: clientIDFile and clientSecretFile are required")
	}
	if err := checkTokenURL(c.TokenURL, c.AllowInsecureHTTP); err != nil {
		return nil, fmt.Errorf("creating OAuth2 token source: %w", err)
	}
	style, err := authStyle(c.AuthStyle)
	if err != nil {
		return nil, fmt.Errorf("creating OAuth2 token source: %w", err)
	}
	for k := range c.EndpointParams {
		if k == "scope" && len(c.Scopes) > 0 {
			return nil, errors.New("creating OAuth2 token source: endpointParams.scope conflicts with scopes")
		}
		if k == "client_secret" || k == "client_id" {
			return nil, fmt.Errorf("creating OAuth2 token source: endpointParams must not set %s", k)
		}
	}
	if opts.EarlyExpiry <= 0 {
		opts.EarlyExpiry = DefaultEarlyExpiry
	}
	if opts.RecheckInterval == 0 {
		opts.RecheckInterval = DefaultRecheckInterval
	}
	if opts.FailureHoldoff == 0 {
		opts.FailureHoldoff = DefaultFailureHoldoff
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.MinRefreshInterval == 0 {
		opts.MinRefreshInterval = DefaultMinRefresh
	}
	limit := rate.Inf
	if opts.MinRefreshInterval > 0 {
		limit = rate.Every(opts.MinRefreshInterval)
	}
	s := &Source{opts: opts, client: opts.HTTPClient, log: opts.Log, style: style, invalidations: rate.NewLimiter(limit, 1)}
	if s.client == nil {
		s.client = http.DefaultClient
	}
	id, secret, err := s.readCredentials()
	if err != nil {
		return nil, fmt.Errorf("creating OAuth2 token source: %w", err)
	}
	s.credsHash = hashCredentials(id, secret)
	s.lastCheck = time.Now()
	s.cur = s.newGeneration(id, secret)
	return s, nil
}

// checkTokenURL accepts an absolute https URL, or http when allowInsecure
// is set: the client secret travels in the token request. The worker
// configuration checks the same; this is the second line.
func checkTokenURL(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("tokenURL must be an absolute https URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if allowInsecure {
			return nil
		}
		return errors.New("an http tokenURL is refused unless allowInsecureHTTP is set (the client secret would travel in clear text)")
	default:
		return fmt.Errorf("tokenURL scheme must be https, not %q", u.Scheme)
	}
}

func authStyle(s string) (oauth2.AuthStyle, error) {
	switch strings.ToLower(s) {
	case "":
		return oauth2.AuthStyleAutoDetect, nil
	case "header":
		return oauth2.AuthStyleInHeader, nil
	case "params":
		return oauth2.AuthStyleInParams, nil
	default:
		return 0, fmt.Errorf("authStyle must be header, params or empty, not %q", s)
	}
}

func (s *Source) newGeneration(id, secret string) *generation {
	params := url.Values{}
	for k, v := range s.opts.Config.EndpointParams {
		params[k] = append([]string(nil), v...)
	}
	conf := &clientcredentials.Config{
		ClientID:       id,
		ClientSecret:   secret,
		TokenURL:       s.opts.Config.TokenURL,
		Scopes:         append([]string(nil), s.opts.Config.Scopes...),
		EndpointParams: params,
		AuthStyle:      s.style,
	}
	f := &fetcher{s: s, conf: conf}
	return &generation{ts: oauth2.ReuseTokenSourceWithExpiry(nil, f, s.opts.EarlyExpiry), fetch: f}
}

// Token returns the shared token, fetching one when there is none or it is
// about to expire. It returns early with ctx's error when ctx ends first
// (the fetch itself goes on for the other callers).
func (s *Source) Token(ctx context.Context) (*oauth2.Token, error) {
	gen := s.current()
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := gen.ts.Token()
		ch <- result{t, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for an OAuth2 token: %w", context.Cause(ctx))
	}
	if r.err != nil {
		return nil, r.err
	}
	s.mu.Lock()
	if s.cur == gen {
		gen.last = r.tok.AccessToken
	}
	s.mu.Unlock()
	return r.tok, nil
}

// Invalidate discards the cached token if it is still tok (the token the
// upstream just refused). Calls for an already replaced token do nothing, so
// a burst of 401s for one token causes one refresh; a call within
// MinRefreshInterval of the previous discard does nothing either.
func (s *Source) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.last != tok.AccessToken || !s.invalidations.Allow() {
		return
	}
	s.cur = s.newGeneration(s.cur.fetch.conf.ClientID, s.cur.fetch.conf.ClientSecret)
	s.log.V(1).Info("Discarded the OAuth2 token refused by the upstream")
}

// current re-reads the credential files when the recheck interval has passed
// and returns the generation to use.
func (s *Source) current() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.opts.RecheckInterval > 0 && now.Sub(s.lastCheck) < s.opts.RecheckInterval {
		return s.cur
	}
	s.lastCheck = now
	id, secret, err := s.readCredentials()
	if err != nil {
		// Kubernetes swaps Secret volumes atomically; a failed read is
		// transient or a broken mount. Keep the credentials we have.
		s.log.Error(err, "Re-reading OAuth2 client credentials failed; keeping the previous ones")
		return s.cur
	}
	h := hashCredentials(id, secret)
	if h == s.credsHash {
		return s.cur
	}
	s.credsHash = h
	s.cur = s.newGeneration(id, secret)
	s.failMu.Lock()
	s.failUntil, s.failErr = time.Time{}, nil
	s.failMu.Unlock()
	s.log.Info("OAuth2 client credentials changed; the cached token was discarded")
	return s.cur
}

func (s *Source) readCredentials() (id, secret string, err error) {
	id, err = readCredentialFile(s.opts.Config.ClientIDFile, "client ID")
	if err != nil {
		return "", "", err
	}
	secret, err = readCredentialFile(s.opts.Config.ClientSecretFile, "client secret")
	if err != nil {
		return "", "", err
	}
	return id, secret, nil
}

func readCredentialFile(path, what string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the OAuth2 %s file: %w", what, err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading the OAuth2 %s file %s: %w", what, path, err)
	}
	if len(data) > maxCredentialFileBytes {
		return "", fmt.Errorf("the OAuth2 %s file %s is over %d bytes", what, path, maxCredentialFileBytes)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("the OAuth2 %s file %s is empty", what, path)
	}
	return v, nil
}

func hashCredentials(id, secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(id + "\x00" + secret))
}
