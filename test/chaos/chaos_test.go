// Package chaos_test is the `make chaos` driver: portal worker processes
// (bin/portal) on a real Apache Kafka broker, killed with SIGKILL and
// stopped with SIGTERM on a schedule while mixed slow, fast and multi-chunk
// jobs flow through pkg/client, plus one broker restart. It counts, from the
// requester's side, lost (no answer before the deadline), wrong and
// duplicated answers, and from the upstream's side (an httptest server that
// records every job ID it executes) the jobs executed more than once. It
// fails on any lost or wrong answer.
//
// It runs only with KAFKASEND_CHAOS=1 (make chaos sets it, with
// KAFKASEND_TEST_BROKERS and KAFKASEND_CHAOS_PORTAL_BIN); its size is set
// by KAFKASEND_CHAOS_JOBS (default 400) and KAFKASEND_CHAOS_WORKERS (3).
package chaos_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/client"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// upstream executes jobs and records each job ID (Idempotency-Key) it ran.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	execs map[string]int // job ID -> executions started
	done  map[string]int // job ID -> executions answered
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{execs: map[string]int{}, done: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Idempotency-Key")
		u.mu.Lock()
		u.execs[id]++
		u.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/api/slow/") {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		} else {
			time.Sleep(10 * time.Millisecond)
		}
		_, _ = w.Write([]byte(expected(r.URL.Path, body)))
		u.mu.Lock()
		u.done[id]++
		u.mu.Unlock()
	}))
	t.Cleanup(u.Close)
	return u
}

// expected is the answer of a correct execution: it names the path and the
// body's digest, so that a mixed-up or truncated answer shows.
func expected(path string, body []byte) string {
	sum := sha256.Sum256(body)
	return path + " " + strconv.Itoa(len(body)) + " " + hex.EncodeToString(sum[:])
}

// worker is one portal process.
type worker struct {
	n      int
	cmd    *exec.Cmd
	health string
	exited chan struct{}
	err    error
	log    string
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Error(err)
		return "127.0.0.1:1"
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the portal binary and waits (bounded) until it is ready. It
// runs on the chaos goroutine too, so it reports with Errorf, not Fatalf.
func start(t *testing.T, bin, cfgFile, logDir string, n int) *worker {
	w := &worker{n: n, health: freeAddr(t), exited: make(chan struct{})}
	w.log = filepath.Join(logDir, fmt.Sprintf("portal-%d.log", n))
	f, err := os.OpenFile(w.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("portal %d log: %v", n, err)
		f = os.Stderr
	}
	w.cmd = exec.Command(bin, "--config", cfgFile, "--health-bind-address", w.health,
		"--metrics-bind-address", freeAddr(t), "--log-level", "info")
	w.cmd.Stdout, w.cmd.Stderr = f, f
	if err := w.cmd.Start(); err != nil {
		t.Errorf("starting portal %d: %v", n, err)
		close(w.exited)
		return w
	}
	go func() { w.err = w.cmd.Wait(); _ = f.Close(); close(w.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + w.health + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w
			}
		}
		select {
		case <-w.exited:
			t.Errorf("portal %d exited before ready: %v (log %s)", n, w.err, w.log)
			return w
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("portal %d not ready within 60s; going on (log %s)", n, w.log)
	return w
}

func (w *worker) kill() {
	if w.cmd.Process != nil {
		_ = w.cmd.Process.Kill()
	}
	<-w.exited
}

func (w *worker) term(t *testing.T) {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
		if w.err != nil {
			t.Errorf("portal %d exited with %v after SIGTERM, want 0 (log %s)", w.n, w.err, w.log)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("portal %d still running 60s after SIGTERM; killing it", w.n)
		w.kill()
	}
}

// outcome of one logical job, from the requester's side.
type outcome struct {
	kind     string // "ok", "wrong", "lost", "error:<kind>", "unsent"
	id       string
	detail   string
	attempts int // submissions (a failed produce is submitted again)
	took     time.Duration
}

func TestChaos(t *testing.T) {
	if os.Getenv("KAFKASEND_CHAOS") != "1" {
		t.Skip("the chaos run needs KAFKASEND_CHAOS=1 (make chaos)")
	}
	kafkatest.RequireReal(t)
	bin := os.Getenv("KAFKASEND_CHAOS_PORTAL_BIN")
	if bin == "" {
		t.Fatal("KAFKASEND_CHAOS_PORTAL_BIN must name the portal binary (make chaos builds bin/portal)")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	logDir := filepath.Join(root, "bin", "chaos")
	_ = os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	jobs, workers := envInt("KAFKASEND_CHAOS_JOBS", 400), envInt("KAFKASEND_CHAOS_WORKERS", 3)

	brokers := kafkatest.RealBrokers()
	requests := kafkatest.CreateTopic(t, brokers, 6)
	replies := kafkatest.CreateTopic(t, brokers, 4)
	dlq := kafkatest.CreateTopic(t, brokers, 1)
	up := newUpstream(t)

	c := config.Default()
	c.Kafka.Brokers = brokers
	c.Kafka.ConsumerGroup = "chaos-" + requests
	c.Kafka.ClientID = "chaos-portal"
	c.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	c.Kafka.SessionTimeout = metav1.Duration{Duration: 6 * time.Second}
	c.Kafka.HeartbeatInterval = metav1.Duration{Duration: 2 * time.Second}
	c.Kafka.MaxMessageBytes = 64 << 10
	c.Topics = config.Topics{Requests: requests, Replies: replies, DeadLetter: dlq}
	c.Upstream.BaseURL = up.URL + "/api"
	c.Upstream.AllowInsecureHTTP = true
	c.Timeouts.Request = metav1.Duration{Duration: 30 * time.Second}
	c.Timeouts.Drain = metav1.Duration{Duration: 20 * time.Second}
	c.Timeouts.ChunkAssembly = metav1.Duration{Duration: 60 * time.Second}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(logDir, "portal.yaml")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var wmu sync.Mutex
	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = start(t, bin, cfgFile, logDir, i)
	}
	t.Cleanup(func() {
		wmu.Lock()
		defer wmu.Unlock()
		for _, w := range ws {
			if w != nil {
				w.kill()
			}
		}
	})

	// Requesters: two client instances, each with its own reply partition.
	const requesters = 2
	clients := make([]*client.Client, requesters)
	for i := range clients {
		cl, err := client.New(client.Config{
			Brokers: brokers, RequestsTopic: requests, ReplyTopic: replies, ReplyPartition: int32(i),
			Version: c.Kafka.Version, ClientID: fmt.Sprintf("chaos-requester-%d", i),
			MaxMessageBytes: 64 << 10, Timeout: 3 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[i] = cl
	}

	// The chaos schedule, relative to the first job.
	began := time.Now()
	var events []string
	var emu sync.Mutex
	note := func(format string, args ...any) {
		emu.Lock()
		defer emu.Unlock()
		e := fmt.Sprintf("%5.1fs ", time.Since(began).Seconds()) + fmt.Sprintf(format, args...)
		events = append(events, e)
		t.Log(e)
	}
	chaosDone := make(chan struct{})
	var brokerRestart time.Duration
	go func() {
		defer close(chaosDone)
		restart := func(i int) {
			w := start(t, bin, cfgFile, logDir, i)
			wmu.Lock()
			ws[i] = w
			wmu.Unlock()
			note("portal %d restarted", i)
		}
		at := func(d time.Duration) { time.Sleep(time.Until(began.Add(d))) }
		at(8 * time.Second)
		note("SIGKILL portal 0")
		ws[0].kill()
		at(12 * time.Second)
		restart(0)
		at(20 * time.Second)
		note("SIGTERM portal 1")
		ws[1].term(t)
		restart(1)
		at(32 * time.Second)
		note("broker restart")
		s := time.Now()
		out, err := exec.Command(filepath.Join(root, "hack", "kafka.sh"), "restart").CombinedOutput()
		brokerRestart = time.Since(s)
		if err != nil {
			t.Errorf("broker restart: %v\n%s", err, out)
		}
		note("broker back after %.1fs", brokerRestart.Seconds())
		at(brokerRestart + 45*time.Second)
		note("SIGKILL portal %d", workers-1)
		ws[workers-1].kill()
		restart(workers - 1)
		note("SIGTERM portal 0")
		ws[0].term(t)
		restart(0)
	}()

	// The load: jobs of three shapes, at most 24 outstanding, fed for
	// about a minute.
	results := make([]outcome, jobs)
	sem := make(chan struct{}, 24)
	var wg sync.WaitGroup
	var unmatched atomic.Int64
	interval := 60 * time.Second / time.Duration(jobs)
	for n := range jobs {
		time.Sleep(time.Until(began.Add(time.Duration(n) * interval)))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[n] = runJob(clients[n%requesters], n)
		}()
	}
	wg.Wait()
	<-chaosDone
	for _, cl := range clients {
		unmatched.Add(cl.Stats().Unmatched)
	}
	// Late duplicate answers and re-executions still in flight.
	time.Sleep(5 * time.Second)

	report(t, results, up, unmatched.Load(), events, brokerRestart, time.Since(began), workers)
}

// runJob submits job n (again, with a new ID, when producing fails, as a
// requester would) and awaits its answer.
func runJob(cl *client.Client, n int) outcome {
	r := rand.New(rand.NewPCG(uint64(n), 99))
	var path string
	var body []byte
	switch {
	case n%10 == 3: // slow: 3 s upstream call
		path, body = fmt.Sprintf("/slow/%d", n), []byte(fmt.Sprintf("slow job %d", n))
	case n%10 == 7: // multi-chunk: 200 KiB body, 4 chunks of 64 KiB records
		path, body = fmt.Sprintf("/big/%d", n), make([]byte, 200<<10)
		for i := range body {
			body[i] = byte(r.UintN(256))
		}
	default:
		path, body = fmt.Sprintf("/fast/%d", n), []byte(fmt.Sprintf("fast job %d", n))
	}
	want := expected("/api"+path, body)
	start := time.Now()
	o := outcome{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var id string
	for {
		o.attempts++
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://portal"+path, bytes.NewReader(body))
		var err error
		id, err = cl.Submit(ctx, req)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return outcome{kind: "unsent", detail: err.Error(), attempts: o.attempts, took: time.Since(start)}
		}
		time.Sleep(time.Second)
	}
	o.id = id
	resp, err := cl.Await(ctx, id)
	o.took = time.Since(start)
	var ce *client.Error
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		o.kind, o.detail = "lost", err.Error()
	case errors.As(err, &ce):
		o.kind, o.detail = "error:"+string(ce.Kind), ce.Message
	case err != nil:
		o.kind, o.detail = "lost", err.Error()
	default:
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != want {
			o.kind, o.detail = "wrong", fmt.Sprintf("status %d body %.80q, want %.80q", resp.StatusCode, got, want)
		} else {
			o.kind = "ok"
		}
	}
	return o
}

func report(t *testing.T, results []outcome, up *upstream, unmatched int64, events []string, brokerRestart, wall time.Duration, workers int) {
	counts := map[string]int{}
	var lats []time.Duration
	resubmitted := 0
	for _, o := range results {
		counts[o.kind]++
		if o.kind == "ok" {
			lats = append(lats, o.took)
		}
		if o.attempts > 1 {
			resubmitted++
		}
	}
	up.mu.Lock()
	reexec, extra, neverRun := 0, 0, 0
	for _, o := range results {
		if o.id == "" {
			continue
		}
		switch e := up.execs[o.id]; {
		case e > 1:
			reexec++
			extra += e - 1
		case e == 0:
			neverRun++
		}
	}
	executed := len(up.execs)
	up.mu.Unlock()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))].Round(time.Millisecond)
	}
	var kinds []string
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run: %d jobs (80%% fast 10 ms, 10%% slow 3 s, 10%% 200 KiB bodies in 4 chunks), %d portal processes, wall %s\n",
		len(results), workers, wall.Round(time.Second))
	fmt.Fprintf(&b, "schedule:\n  %s\n", strings.Join(events, "\n  "))
	fmt.Fprintf(&b, "requester side:\n")
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-30s %d\n", k, counts[k])
	}
	fmt.Fprintf(&b, "  %-30s %d\n", "resubmitted (produce failed)", resubmitted)
	fmt.Fprintf(&b, "  %-30s %d\n", "duplicate answers", unmatched)
	fmt.Fprintf(&b, "  latency of ok jobs             p50 %s  p95 %s  p99 %s  max %s\n", pct(0.5), pct(0.95), pct(0.99), pct(1))
	fmt.Fprintf(&b, "upstream side:\n")
	fmt.Fprintf(&b, "  %-30s %d\n", "job IDs executed", executed)
	fmt.Fprintf(&b, "  %-30s %d (%d extra executions)\n", "executed more than once", reexec, extra)
	fmt.Fprintf(&b, "  %-30s %d\n", "answered, never executed", neverRun)
	fmt.Fprintf(&b, "broker restart took %s\n", brokerRestart.Round(100*time.Millisecond))
	t.Log("\n" + b.String())
	if p := os.Getenv("KAFKASEND_CHAOS_REPORT"); p != "" {
		_ = os.WriteFile(p, []byte(b.String()), 0o644)
	}
	for _, o := range results {
		if o.kind == "lost" || o.kind == "wrong" || o.kind == "unsent" {
			t.Errorf("job %s: %s: %s", o.id, o.kind, o.detail)
		}
	}
	if counts["ok"] != len(results) {
		t.Errorf("%d of %d jobs answered correctly", counts["ok"], len(results))
	}
}
