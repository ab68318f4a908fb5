package portal_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/pkg/wire"
)

var (
	buildOnce sync.Once
	portalBin string
	buildErr  error
)

// portalBinary builds cmd/portal once per test run.
func portalBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kafkasend-portal-bin-")
		if err != nil {
			buildErr = err
			return
		}
		portalBin = filepath.Join(dir, "portal")
		out, err := exec.Command("go", "build", "-o", portalBin, "kafkasend.io/kafkasend/cmd/portal").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return portalBin
}

// process is a portal worker running as its own OS process.
type process struct {
	cmd    *exec.Cmd
	health string
	exited chan struct{}
	err    error
	log    *strings.Builder
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs the portal binary with e's configuration and waits until
// it reports ready (joined to its group).
func (e *env) startProcess(t *testing.T) *process {
	t.Helper()
	data, err := e.cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "portal.yaml")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pr := &process{health: freeAddr(t), exited: make(chan struct{}), log: &strings.Builder{}}
	pr.cmd = exec.Command(portalBinary(t), "--config", cfgFile,
		"--health-bind-address", pr.health, "--metrics-bind-address", pr.health, "--log-level", "info")
	pr.cmd.Stdout, pr.cmd.Stderr = &lockedWriter{b: pr.log}, &lockedWriter{b: pr.log}
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.err = pr.cmd.Wait(); close(pr.exited) }()
	t.Cleanup(func() {
		_ = pr.cmd.Process.Kill()
		<-pr.exited
		if t.Failed() {
			t.Logf("portal process log:\n%s", pr.logText())
		}
	})
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := http.Get("http://" + pr.health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return pr
			}
		}
		select {
		case <-pr.exited:
			t.Fatalf("portal exited before ready: %v\n%s", pr.err, pr.logText())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("portal not ready within 45s\n%s", pr.logText())
		}
	}
}

func (pr *process) logText() string {
	if w, ok := pr.cmd.Stdout.(*lockedWriter); ok {
		w.mu.Lock()
		defer w.mu.Unlock()
	}
	return pr.log.String()
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// sendSlow sends n jobs to the slow endpoint and waits until the upstream
// is executing all of them.
func (e *env) sendSlow(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		j := job(fmt.Sprintf("/slow/%d", i), []byte("payload"))
		if err := e.req.Send(j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for int(e.up.active.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d jobs reached the upstream", e.up.active.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ids
}

func TestSIGTERMDrainsInFlightJobsWithoutReexecution(t *testing.T) {
	e := newEnv(t, 3*time.Second, 0, func(c *config.Config) {
		c.Timeouts.Drain = metav1.Duration{Duration: 20 * time.Second}
	})
	pr := e.startProcess(t)
	ids := e.sendSlow(t, 20)

	// What an operator's dashboard sees while the 20 calls run (after one
	// commit-loop tick).
	time.Sleep(1500 * time.Millisecond)
	metrics := scrape(t, pr.health)
	for _, want := range []string{
		"kafkasend_portal_in_flight_jobs 20",
		"kafkasend_portal_jobs_received_total 20",
		"kafkasend_portal_uncommitted_offsets{",
		"kafkasend_portal_job_duration_seconds_bucket",
		"kafkasend_portal_held_bytes",
		"kafkasend_portal_partial_jobs 0",
		"kafkasend_portal_backpressure_seconds_total",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	start := time.Now()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pr.exited:
	case <-time.After(40 * time.Second):
		t.Fatalf("portal still running 40s after SIGTERM")
	}
	if pr.err != nil {
		t.Fatalf("portal exited with %v after SIGTERM, want status 0\n%s", pr.err, pr.logText())
	}
	t.Logf("drained and exited in %v", time.Since(start))
	if m := e.col.Wait(ids, 10*time.Second); len(m) > 0 {
		t.Fatalf("%d jobs in flight at SIGTERM got no response", len(m))
	}
	for _, id := range ids {
		if a, _ := e.col.Get(id); a.Response.Status != http.StatusOK {
			t.Errorf("job %s: %d %s %s", id, a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
		}
	}

	// A new worker in the same group finds every offset committed: nothing
	// runs twice.
	e.startProcess(t)
	time.Sleep(5 * time.Second)
	for _, id := range ids {
		if n := e.up.callsOf(id); n != 1 {
			t.Errorf("job %s executed %d times", id, n)
		}
	}
	if d := e.col.Duplicates(); len(d) > 0 {
		t.Errorf("jobs answered twice: %v", d)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKill9ThenRestartAnswersEveryJob(t *testing.T) {
	e := newEnv(t, 3*time.Second, 0, nil)
	pr := e.startProcess(t)
	ids := e.sendSlow(t, 20)
	// Fast jobs behind them are answered while the slow ones run: the
	// commit point stays at the oldest slow job, but the commit metadata
	// records the fast jobs as answered.
	var fast []string
	for i := range 10 {
		j := job(fmt.Sprintf("/fast/%d", i), []byte("x"))
		if err := e.req.Send(j); err != nil {
			t.Fatal(err)
		}
		fast = append(fast, j.ID)
	}
	if m := e.col.Wait(fast, 10*time.Second); len(m) > 0 {
		t.Fatalf("%d fast jobs not answered before the kill", len(m))
	}
	time.Sleep(1500 * time.Millisecond) // one commit-loop tick
	ids = append(ids, fast...)
	if err := pr.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-pr.exited
	var exitErr *exec.ExitError
	if !errors.As(pr.err, &exitErr) {
		t.Fatalf("want the process killed, got %v", pr.err)
	}

	start := time.Now()
	e.startProcess(t)
	if m := e.col.Wait(ids, 60*time.Second); len(m) > 0 {
		t.Fatalf("%d of %d jobs got no response after kill -9 and restart", len(m), len(ids))
	}
	reexecuted := 0
	for _, id := range ids {
		a, _ := e.col.Get(id)
		if a.Response.Status != http.StatusOK || a.Response.ErrorKind != wire.ErrorNone {
			t.Errorf("job %s: %d %s %s", id, a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
		}
		if e.up.callsOf(id) > 1 {
			reexecuted++
		}
	}
	t.Logf("all %d jobs answered %v after restart; %d re-executed (at-least-once); %d answered twice",
		len(ids), time.Since(start).Round(time.Millisecond), reexecuted, len(e.col.Duplicates()))
	// Jobs answered before the kill are not run again.
	for _, id := range fast {
		if n := e.up.callsOf(id); n != 1 {
			t.Errorf("fast job %s answered before the kill was executed %d times", id, n)
		}
	}
	if d := e.col.Duplicates(); len(d) > 0 {
		t.Errorf("jobs answered twice: %v", d)
	}
}
