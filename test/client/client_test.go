// Package client_test runs the requester client against a Kafka broker
// (Apache Kafka when KAFKASEND_TEST_BROKERS is set, else kfake), an
// in-process portal and a loopback upstream, and checks what a program using
// it as an http.RoundTripper would notice.
package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/demo"
	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/client"
)

// upstream answers under /api: /echo echoes method, query, body and the
// traceparent; /missing is a 404; /slow/ takes slow; /id/X answers X.
func newUpstream(t *testing.T, slow time.Duration) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header().Set("X-Traceparent", r.Header.Get("Traceparent"))
		w.Header().Set("X-Test", r.Header.Get("X-Test"))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/api/missing", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such thing", http.StatusNotFound)
	})
	mux.HandleFunc("/api/slow/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(slow):
			_, _ = w.Write([]byte("slow " + strings.TrimPrefix(r.URL.Path, "/api/slow/")))
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/api/id/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.TrimPrefix(r.URL.Path, "/api/id/")))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// env is a pipeline: topics, an upstream and a running portal.
type env struct {
	brokers  []string
	requests string
	replies  string
}

func newEnv(t *testing.T, slow time.Duration, mutate ...func(*config.Config)) *env {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	e := &env{brokers: brokers}
	e.requests = kafkatest.CreateTopic(t, brokers, 3)
	e.replies = kafkatest.CreateTopic(t, brokers, 4)
	up := newUpstream(t, slow)
	c := config.Default()
	c.Kafka.Brokers = brokers
	c.Kafka.ConsumerGroup = "g-" + e.requests
	c.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	c.Topics = config.Topics{Requests: e.requests, Replies: e.replies}
	c.Upstream.BaseURL = up.URL + "/api"
	c.Upstream.AllowInsecureHTTP = true
	c.Upstream.MaxRequestBytes = 32 << 20
	c.Upstream.MaxResponseBytes = 32 << 20
	c.Concurrency.MaxBytes = 256 << 20
	c.Timeouts.ChunkAssembly = metav1.Duration{Duration: 5 * time.Second}
	c.Timeouts.Drain = metav1.Duration{Duration: 5 * time.Second}
	for _, m := range mutate {
		m(&c)
	}
	p, err := demo.StartPortal(c, portal.Options{Log: logr.Discard(), SessionTimeout: 6 * time.Second}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return e
}

func (e *env) client(t *testing.T, partition int32) *client.Client {
	t.Helper()
	c, err := client.New(e.config(partition))
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *env) config(partition int32) client.Config {
	return client.Config{
		Brokers: e.brokers, RequestsTopic: e.requests, ReplyTopic: e.replies, ReplyPartition: partition,
		Version: kafkatest.SaramaConfig().Version.String(), Timeout: 20 * time.Second,
	}
}

func TestHTTPClientThroughKafka(t *testing.T) {
	e := newEnv(t, 10*time.Second)
	hc := &http.Client{Transport: &client.Transport{Client: e.client(t, 0)}}

	t.Run("GET with query, header and traceparent", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://ignored.example/echo?a=1&b=two", nil)
		req.Header.Set("X-Test", "yes")
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		req.Header.Set("Traceparent", tp)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		for k, want := range map[string]string{"X-Method": "GET", "X-Query": "a=1&b=two", "X-Test": "yes", "X-Traceparent": tp} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("upstream saw %s=%q, want %q", k, got, want)
			}
		}
	})

	t.Run("POST 10 MiB byte-exact", func(t *testing.T) {
		body := make([]byte, 10<<20)
		_, _ = rand.Read(body)
		start := time.Now()
		resp, err := hc.Post("http://ignored.example/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Method") != "POST" {
			t.Fatalf("status %d method %q, want 200 POST", resp.StatusCode, resp.Header.Get("X-Method"))
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("echoed body differs: %d bytes back, %d sent", len(got), len(body))
		}
		t.Logf("10 MiB round trip in %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("404 is a response", func(t *testing.T) {
		resp, err := hc.Get("http://ignored.example/missing")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "no such thing") {
			t.Fatalf("got %d %q, want 404 with the upstream's body", resp.StatusCode, b)
		}
	})

	t.Run("deadline gives a timeout error quickly", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ignored.example/slow/1", nil)
		start := time.Now()
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want a timeout error", resp.StatusCode)
		}
		if !errors.Is(err, client.ErrTimeout) {
			t.Fatalf("error %v does not match client.ErrTimeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("timed out after %s, want about 700ms", d)
		}
	})

	t.Run("policy refusal is a typed error", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://ignored.example/../x", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want a rejected error", resp.StatusCode)
		}
		var ce *client.Error
		if !errors.Is(err, client.ErrRejected) || !errors.As(err, &ce) || ce.Message == "" {
			t.Fatalf("error %v: want a *client.Error matching ErrRejected with a message", err)
		}
		if errors.Is(err, client.ErrTimeout) {
			t.Fatalf("a rejected error also matches ErrTimeout")
		}
	})
}

func TestInstancesSharingAReplyTopicGetOnlyTheirOwnAnswers(t *testing.T) {
	e := newEnv(t, time.Second)
	const perClient = 200
	clients := []*client.Client{e.client(t, 0), e.client(t, 1)}
	var wg sync.WaitGroup
	errs := make(chan error, 2*perClient)
	start := time.Now()
	for ci, c := range clients {
		hc := &http.Client{Transport: &client.Transport{Client: c}}
		for i := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("c%d-%d", ci, i)
				resp, err := hc.Get("http://x/id/" + want)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", want, err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != want {
					errs <- fmt.Errorf("%s: got %d %q", want, resp.StatusCode, b)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d requests failed", n, 2*perClient)
	}
	for i, c := range clients {
		s := c.Stats()
		t.Logf("client %d: %+v", i, s)
		if s.Sent != perClient || s.Delivered != perClient || s.Unmatched != 0 || s.Malformed != 0 {
			t.Errorf("client %d stats %+v: want %d sent and delivered, 0 unmatched (no other instance's answers seen)", i, s, perClient)
		}
	}
	t.Logf("%d requests through 2 clients in %s", 2*perClient, time.Since(start).Round(time.Millisecond))
}

func TestAwaitAfterRestart(t *testing.T) {
	e := newEnv(t, 1500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	first, err := client.New(e.config(2))
	if err != nil {
		t.Fatal(err)
	}
	// One job answered while no client runs, one answered after the new
	// client started.
	done, _ := http.NewRequest(http.MethodPost, "http://x/echo", strings.NewReader("answered while down"))
	doneID, err := first.Submit(ctx, done)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	slow, _ := http.NewRequest(http.MethodGet, "http://x/slow/late", nil)
	slowID, err := first.Submit(ctx, slow)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // the echo is answered meanwhile

	second := e.client(t, 2)
	for id, want := range map[string]string{doneID: "answered while down", slowID: "slow late"} {
		resp, err := second.Await(ctx, id)
		if err != nil {
			t.Fatalf("Await(%s) after restart: %v", id, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("Await(%s): %d %q, want 200 %q", id, resp.StatusCode, b, want)
		}
	}
	if s := second.Stats(); s.Delivered != 2 {
		t.Errorf("stats %+v, want 2 delivered", s)
	}
}

// The portal answers a job that is too large as soon as its first chunk
// declares the size, before it knows the reply partition; the client's job
// IDs make such answers land on the sender's partition anyway.
func TestAnswerBeforeDecodingReachesTheSender(t *testing.T) {
	e := newEnv(t, time.Second, func(c *config.Config) { c.Upstream.MaxRequestBytes = 1 << 20 })
	for _, part := range []int32{1, 3} {
		c := e.client(t, part)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://x/echo", bytes.NewReader(make([]byte, 2<<20)))
		start := time.Now()
		_, err := c.Do(ctx, req)
		cancel()
		if !errors.Is(err, client.ErrTooLarge) {
			t.Fatalf("partition %d: error %v, want one matching ErrTooLarge", part, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("partition %d: too_large after %s, want it quickly", part, d)
		}
	}
}
