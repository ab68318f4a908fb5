package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// upstreamStats are the counters a helper upstream process reports.
type upstreamStats struct {
	Active int64 `json:"active"`
	Peak   int64 `json:"peak"`
	Total  int64 `json:"total"`
}

// serveUpstreamChild runs the bench upstream in a helper process, with its
// counters on a second loopback listener (GET /stats, POST /reset-peak), so
// that serving them costs the measured upstream nothing.
func serveUpstreamChild(ctx context.Context, h2c bool, ready func(childReady) error) error {
	u, err := startUpstream(h2c)
	if err != nil {
		return err
	}
	defer u.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the upstream's counters: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamStats{Active: u.active.Load(), Peak: u.peak.Load(), Total: u.total.Load()})
	})
	mux.HandleFunc("POST /reset-peak", func(w http.ResponseWriter, _ *http.Request) {
		u.peak.Store(0)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := ready(childReady{URL: u.url, Stats: "http://" + ln.Addr().String()}); err != nil {
		_ = srv.Close()
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("serving the upstream's counters: %w", err)
	}
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("closing the counters listener: %w", err)
	}
	return nil
}

// remoteUpstream is the bench upstream running in a helper process.
type remoteUpstream struct {
	proc   *childProcess
	client *http.Client
}

func startRemoteUpstream(ctx context.Context, dir string, h2c bool) (*remoteUpstream, error) {
	c, err := startChild(ctx, dir, "upstream", childSpec{Role: roleUpstream, H2C: h2c})
	if err != nil {
		return nil, err
	}
	if c.ready.URL == "" || c.ready.Stats == "" {
		_ = c.stop(10 * time.Second)
		return nil, fmt.Errorf("the upstream process announced no address (%+v)", c.ready)
	}
	return &remoteUpstream{proc: c, client: &http.Client{Timeout: 5 * time.Second}}, nil
}

func (r *remoteUpstream) stats() (upstreamStats, error) {
	var s upstreamStats
	resp, err := r.client.Get(r.proc.ready.Stats + "/stats")
	if err != nil {
		return s, fmt.Errorf("reading the upstream's counters: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("reading the upstream's counters: %w", err)
	}
	return s, nil
}

func (r *remoteUpstream) resetPeak() error {
	resp, err := r.client.Post(r.proc.ready.Stats+"/reset-peak", "", nil)
	if err != nil {
		return fmt.Errorf("resetting the upstream's peak: %w", err)
	}
	resp.Body.Close()
	return nil
}

func (r *remoteUpstream) close() error { return r.proc.stop(30 * time.Second) }
