package demo

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/twmb/franz-go/pkg/kfake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
)

// Credentials of the demo's OAuth2 client.
const (
	demoClientID     = "demo-portal"
	demoClientSecret = "demo-secret-not-for-production"
)

// Topics of the embedded broker.
const (
	ReplyTopic = "replies"
)

// EnvOptions shape the embedded pipeline.
type EnvOptions struct {
	// Slow and Fast are the latencies of the upstream's /slow/ and /fast/
	// endpoints.
	Slow, Fast time.Duration
	// RequestTopics are created with 3 partitions each; the reply topic has 4.
	RequestTopics []string
}

// Env is an embedded pipeline: a kfake broker, a loopback upstream API that
// requires an OAuth2 bearer token, the token endpoint, and at most one
// running portal.
type Env struct {
	Brokers     []string
	UpstreamURL string
	TokenURL    string

	opts     EnvOptions
	cluster  *kfake.Cluster
	servers  []*http.Server
	dir      string
	token    string
	active   atomic.Int64
	peak     atomic.Int64
	calls    atomic.Int64
	tokens   atomic.Int64
	refused  atomic.Int64
	portalMu sync.Mutex
	portal   *RunningPortal
}

// StartEnv starts the broker, the upstream and the token endpoint, and
// writes the OAuth2 client credentials to files in a temporary directory.
func StartEnv(opts EnvOptions) (_ *Env, err error) {
	e := &Env{opts: opts, token: rand.Text()}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "kafkasend-demo-"); err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	for name, v := range map[string]string{"client-id": demoClientID, "client-secret": demoClientSecret} {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(v+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing OAuth2 credentials: %w", err)
		}
	}
	e.cluster, err = kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(3, opts.RequestTopics...), kfake.SeedTopics(4, ReplyTopic))
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker: %w", err)
	}
	e.Brokers = e.cluster.ListenAddrs()
	up, err := e.serve(http.HandlerFunc(e.upstream))
	if err != nil {
		return nil, err
	}
	e.UpstreamURL = up + "/api"
	tok, err := e.serve(http.HandlerFunc(e.tokenEndpoint))
	if err != nil {
		return nil, err
	}
	e.TokenURL = tok + "/oauth2/token"
	return e, nil
}

// serve runs h on a loopback port and returns its base URL.
func (e *Env) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening on loopback: %w", err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.servers = append(e.servers, s)
	go func() { _ = s.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

// upstream is the API: it checks the bearer token, then answers
// /api/slow/... after Slow, /api/fast/... after Fast, and echoes the body
// of anything else.
func (e *Env) upstream(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+e.token)) != 1 {
		e.refused.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid or missing token", http.StatusUnauthorized)
		return
	}
	e.calls.Add(1)
	n := e.active.Add(1)
	defer e.active.Add(-1)
	for {
		p := e.peak.Load()
		if n <= p || e.peak.CompareAndSwap(p, n) {
			break
		}
	}
	var d time.Duration
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/slow/"):
		d = e.opts.Slow
	case strings.HasPrefix(r.URL.Path, "/api/fast/"):
		d = e.opts.Fast
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(body) == 0 {
		body = []byte("ok " + r.URL.Path + "\n")
	}
	_, _ = w.Write(body)
}

// tokenEndpoint is an OAuth2 client-credentials token endpoint (RFC 6749
// section 4.4) accepting HTTP basic or form credentials.
func (e *Env) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != demoClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(demoClientSecret)) != 1 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	e.tokens.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": e.token, "token_type": "Bearer", "expires_in": 3600,
	})
}

// PortalConfig is a portal configuration for requests topic, with OAuth2
// and the given concurrency.
func (e *Env) PortalConfig(requests string, maxInFlight int) config.Config {
	c := config.Default()
	c.Kafka.Brokers = e.Brokers
	c.Kafka.ConsumerGroup = "portal-" + requests
	c.Kafka.ClientID = "kafkasend-demo-portal"
	c.Topics = config.Topics{Requests: requests, Replies: ReplyTopic}
	c.Upstream.BaseURL = e.UpstreamURL
	c.Upstream.AllowInsecureHTTP = true
	c.OAuth = &config.OAuth{
		TokenURL:         e.TokenURL,
		ClientIDFile:     filepath.Join(e.dir, "client-id"),
		ClientSecretFile: filepath.Join(e.dir, "client-secret"),
		// The demo's token endpoint is a loopback test server.
		AllowInsecureHTTP: true,
	}
	c.Concurrency.MaxInFlight = maxInFlight
	c.Timeouts.Drain = metav1.Duration{Duration: 10 * time.Second}
	return c
}

// StartPortal runs a portal with cfg, replacing none: stop the previous one
// first.
func (e *Env) StartPortal(cfg config.Config, log logr.Logger) error {
	e.portalMu.Lock()
	defer e.portalMu.Unlock()
	if e.portal != nil {
		return errors.New("a portal is already running")
	}
	p, err := StartPortal(cfg, portal.Options{Log: log, SessionTimeout: 6 * time.Second, CommitInterval: 200 * time.Millisecond}, 30*time.Second)
	if err != nil {
		return err
	}
	e.portal = p
	return nil
}

// StopPortal drains and stops the running portal, if any.
func (e *Env) StopPortal() error {
	e.portalMu.Lock()
	defer e.portalMu.Unlock()
	if e.portal == nil {
		return nil
	}
	err := e.portal.Stop(30 * time.Second)
	e.portal = nil
	return err
}

// ResetPeak starts a new peak in-flight measurement.
func (e *Env) ResetPeak() { e.peak.Store(e.active.Load()) }

// InFlight is the number of upstream calls in progress.
func (e *Env) InFlight() int64 { return e.active.Load() }

// Peak is the most upstream calls in progress at once since ResetPeak.
func (e *Env) Peak() int64 { return e.peak.Load() }

// TokenRequests is the number of tokens the token endpoint issued.
func (e *Env) TokenRequests() int64 { return e.tokens.Load() }

// Refused is the number of upstream calls refused for a missing or wrong token.
func (e *Env) Refused() int64 { return e.refused.Load() }

// Close stops everything and removes the credential files.
func (e *Env) Close() {
	_ = e.StopPortal()
	for _, s := range e.servers {
		_ = s.Close()
	}
	if e.cluster != nil {
		e.cluster.Close()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}
