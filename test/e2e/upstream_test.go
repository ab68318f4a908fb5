package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is the HTTP API and the OAuth2 token endpoint the worker pods
// call, served by the test on the cluster's bridge address (pods cannot
// reach the host's loopback).
//
//	POST /oauth/token     client credentials; accepts the client secrets in
//	                      secrets, issues short-lived tokens
//	GET  /api/echo        answers who called (the pod's address) and the
//	                      X-Rev header the pipeline adds
//	GET  /api/slow?ms=N   sleeps N ms, counting calls in flight per pod
//
// Every /api call must carry a token it issued, or it answers 401.
type upstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	secrets  map[string]bool     // client secrets the token endpoint accepts
	tokens   map[string]string   // token -> client secret it was issued for
	bySecret map[string]int      // tokens issued per client secret
	calls    map[string]int      // /api calls per "id" query value
	callers  map[string]int      // /api calls per remote IP
	revs     map[string]int      // /api calls per X-Rev header value
	inflight map[string]int      // /api/slow calls in flight per remote IP
	started  map[string]struct{} // ids whose slow call began
	unauth   int                 // /api calls refused for a missing or unknown token

	seq atomic.Int64
}

const clientID = "e2e-client"

func startUpstream(t *testing.T, ip string) *upstream {
	t.Helper()
	u := &upstream{
		secrets: map[string]bool{}, tokens: map[string]string{}, bySecret: map[string]int{},
		calls: map[string]int{}, callers: map[string]int{}, revs: map[string]int{},
		inflight: map[string]int{}, started: map[string]struct{}{},
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listening on the cluster's bridge address %s: %v", ip, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", u.token)
	mux.HandleFunc("/api/", u.api)
	u.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) url() string { return u.srv.URL }

// accept sets the client secrets the token endpoint accepts.
func (u *upstream) accept(secrets ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.secrets = map[string]bool{}
	for _, s := range secrets {
		u.secrets[s] = true
	}
}

func (u *upstream) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	u.mu.Lock()
	valid := id == clientID && u.secrets[secret] && r.PostForm.Get("grant_type") == "client_credentials"
	var tok string
	if valid {
		tok = fmt.Sprintf("tok-%d", u.seq.Add(1))
		u.tokens[tok] = secret
		u.bySecret[secret]++
	}
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !valid {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	// Short-lived: the workers fetch tokens often, so rotated credentials show.
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 12})
}

func (u *upstream) api(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	id := r.URL.Query().Get("id")
	u.mu.Lock()
	_, known := u.tokens[tok]
	if !known {
		u.unauth++
		u.mu.Unlock()
		http.Error(w, "unknown token", http.StatusUnauthorized)
		return
	}
	u.calls[id]++
	u.callers[host]++
	u.revs[r.Header.Get("X-Rev")]++
	u.mu.Unlock()

	switch r.URL.Path {
	case "/api/echo":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"caller": host, "rev": r.Header.Get("X-Rev"), "id": id})
	case "/api/slow":
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		u.mu.Lock()
		u.inflight[host]++
		u.started[id] = struct{}{}
		u.mu.Unlock()
		defer func() {
			u.mu.Lock()
			u.inflight[host]--
			u.mu.Unlock()
		}()
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = fmt.Fprintf(w, "slow %s from %s\n", id, host)
	default:
		http.NotFound(w, r)
	}
}

// snapshot copies the counters.
func (u *upstream) snapshot() (calls, callers, revs, inflight, bySecret map[string]int, unauth int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		o := make(map[string]int, len(m))
		for k, v := range m {
			o[k] = v
		}
		return o
	}
	return cp(u.calls), cp(u.callers), cp(u.revs), cp(u.inflight), cp(u.bySecret), u.unauth
}
