// Package cli_test builds the kafkasend binary and runs it as a user would:
// against a Kafka broker (Apache Kafka when KAFKASEND_TEST_BROKERS is set,
// else kfake), an in-process portal and a loopback upstream.
package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/demo"
	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kafkasend-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kafkasend")
	out, err := exec.Command("go", "build", "-o", binary, "kafkasend.io/kafkasend/cmd/kafkasend").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building kafkasend: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result of one run of the binary.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(hermeticEnviron(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running kafkasend %v: %v", args, err)
	}
	return r
}

// hermeticEnviron is the test process's environment without the KAFKASEND_*
// settings of the shell that runs the tests: each test says what it sets.
func hermeticEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKASEND_") {
			env = append(env, kv)
		}
	}
	return env
}

// pipeline starts topics, an upstream and a portal, and returns the
// environment variables that point kafkasend at them.
func pipeline(t *testing.T) []string {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	requests := kafkatest.CreateTopic(t, brokers, 2)
	replies := kafkatest.CreateTopic(t, brokers, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header().Set("X-Test", r.Header.Get("X-Test"))
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/api/missing", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not here", http.StatusNotFound)
	})
	mux.HandleFunc("/api/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	c := config.Default()
	c.Kafka.Brokers = brokers
	c.Kafka.ConsumerGroup = "g-" + requests
	c.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	c.Topics = config.Topics{Requests: requests, Replies: replies}
	c.Upstream.BaseURL = up.URL + "/api"
	c.Upstream.AllowInsecureHTTP = true
	c.Timeouts.Drain = metav1.Duration{Duration: 5 * time.Second}
	p, err := demo.StartPortal(c, portal.Options{Log: logr.Discard(), SessionTimeout: 6 * time.Second}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return []string{
		"KAFKASEND_BROKERS=" + strings.Join(brokers, ","), "KAFKASEND_TOPIC=" + requests,
		"KAFKASEND_REPLY_TOPIC=" + replies, "KAFKASEND_REPLY_PARTITION=1",
		"KAFKASEND_KAFKA_VERSION=" + kafkatest.SaramaConfig().Version.String(),
	}
}

func TestSendAndAwait(t *testing.T) {
	env := pipeline(t)

	t.Run("body", func(t *testing.T) {
		r := run(t, env, "", "send", "-d", "hello kafka", "/echo")
		if r.code != 0 || r.stdout != "hello kafka" || r.stderr != "" {
			t.Fatalf("exit %d stdout %q stderr %q, want 0 and the echoed body", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("-i prints status and headers first", func(t *testing.T) {
		r := run(t, env, "from stdin", "send", "-i", "-X", "PUT", "-H", "X-Test: v1", "-d", "@-", "/echo?q=1")
		if r.code != 0 {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		head, body, ok := strings.Cut(r.stdout, "\r\n\r\n")
		if !ok || body != "from stdin" {
			t.Fatalf("stdout %q: want headers, a blank line, then the body", r.stdout)
		}
		for _, want := range []string{"HTTP/1.1 200 OK\r\n", "X-Method: PUT", "X-Query: q=1", "X-Test: v1"} {
			if !strings.Contains(head, want) {
				t.Errorf("head %q lacks %q", head, want)
			}
		}
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") {
			t.Errorf("head %q does not start with the status line", head)
		}
	})

	t.Run("404 prints the body and exits 0, or 22 with --fail", func(t *testing.T) {
		r := run(t, env, "", "send", "/missing")
		if r.code != 0 || !strings.Contains(r.stdout, "not here") {
			t.Fatalf("exit %d stdout %q, want 0 and the 404 body", r.code, r.stdout)
		}
		r = run(t, env, "", "send", "--fail", "/missing")
		if r.code != 22 || r.stdout != "" || !strings.Contains(r.stderr, "404") {
			t.Fatalf("--fail: exit %d stdout %q stderr %q, want 22, nothing and the status", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("error responses exit with their kind's code and one line", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			kind string
			code int
		}{
			{[]string{"send", "../x"}, "rejected", 5},
			{[]string{"send", "--timeout", "1s", "/slow"}, "timeout", 3},
		} {
			r := run(t, env, "", tc.args...)
			if r.code != tc.code || r.stdout != "" {
				t.Errorf("%v: exit %d stdout %q, want %d and no output", tc.args, r.code, r.stdout, tc.code)
			}
			if !regexp.MustCompile(`^kafkasend: ` + tc.kind + `: .+\n$`).MatchString(r.stderr) {
				t.Errorf("%v: stderr %q, want one line 'kafkasend: %s: ...'", tc.args, r.stderr, tc.kind)
			}
			if tc.kind == "timeout" && r.took > 5*time.Second {
				t.Errorf("a 1s timeout took %s", r.took)
			}
		}
	})

	t.Run("--async then await", func(t *testing.T) {
		r := run(t, env, "", "send", "--async", "-d", "later", "/echo")
		id := strings.TrimSpace(r.stdout)
		if r.code != 0 || !regexp.MustCompile(`^[A-Z2-7]{26}$`).MatchString(id) {
			t.Fatalf("exit %d stdout %q stderr %q, want a job ID", r.code, r.stdout, r.stderr)
		}
		r = run(t, env, "", "await", "-i", id)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(r.stdout, "\r\n\r\nlater") {
			t.Fatalf("await: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("-o FILE writes the answer there, -v tells the job ID and chunks", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "answer")
		r := run(t, append(env, "KAFKASEND_MAX_MESSAGE_BYTES=2048"), strings.Repeat("x", 10000), "send", "-iv", "-o", out, "-d", "@-", "/echo")
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("exit %d stdout %q stderr %q, want 0 and nothing on stdout", r.code, r.stdout, r.stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(string(got), "\r\n\r\n"+strings.Repeat("x", 10000)) {
			t.Fatalf("%s: %v, %.80q...", out, err, got)
		}
		m := regexp.MustCompile(`kafkasend: job ([A-Z2-7]{26}): 10000 body bytes in (\d+) chunks to `).FindStringSubmatch(r.stderr)
		if m == nil || m[2] < "5" || m[2] > "7" || len(m[2]) != 1 {
			t.Errorf("stderr %q: want the job ID and 5 to 7 chunks (10000 body bytes and the envelope in 2048-byte records)", r.stderr)
		}
		if !strings.Contains(r.stderr, "answered 200 OK after") || !strings.Contains(r.stderr, "wrote the answer (200 OK) to "+out) {
			t.Errorf("stderr %q lacks the answer's arrival", r.stderr)
		}
	})

	t.Run("-v shows a progress line during a long wait", func(t *testing.T) {
		r := run(t, append(env, "KAFKASEND_TIMEOUT=7s"), "", "send", "-v", "/slow")
		if r.code != 3 {
			t.Fatalf("exit %d stderr %q, want 3 (timeout)", r.code, r.stderr)
		}
		if !regexp.MustCompile(`kafkasend: waiting for job [A-Z2-7]{26}: [1-9]s elapsed, deadline in [0-9]s \(\d\d:\d\d:\d\d\)\n`).MatchString(r.stderr) {
			t.Errorf("stderr %q: want a line with the time elapsed and the deadline", r.stderr)
		}
	})

	t.Run("an error leaves no -o file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "answer")
		if r := run(t, env, "", "send", "--fail", "-o", out, "/missing"); r.code != 22 {
			t.Errorf("exit %d, want 22", r.code)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s exists after --fail and a 404: %v", out, err)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{{"send"}, {"send", "-H", "bad", "/x"}, {"frobnicate"}, {"await"}} {
			if r := run(t, env, "", args...); r.code != 2 || r.stderr == "" {
				t.Errorf("%v: exit %d stderr %q, want 2 and a reason", args, r.code, r.stderr)
			}
		}
		if r := run(t, nil, "", "send", "/x"); r.code != 2 || !strings.Contains(r.stderr, "KAFKASEND_BROKERS") {
			t.Errorf("without settings: exit %d stderr %q, want 2 naming what is missing", r.code, r.stderr)
		}
	})
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"send", "await", "demo"} {
		r := run(t, nil, "", cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "kafkasend "+cmd) {
			t.Errorf("%s --help: exit %d, output %q: want 0 and usage with examples", cmd, r.code, r.stdout)
		}
	}
	r := run(t, nil, "", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "send") || !strings.Contains(r.stdout, "3   the portal answered with an error response of kind timeout") {
		t.Errorf("--help: exit %d stdout %q: want the commands and the exit codes", r.code, r.stdout)
	}
	if r := run(t, nil, "", "bench", "--help"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "--scenario") {
		t.Errorf("bench --help: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, nil, "", "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "__start_kafkasend") {
		t.Errorf("completion bash: exit %d, %d bytes", r.code, len(r.stdout))
	}
}

// TestShellSettingsDoNotLeak: the tests pass whatever KAFKASEND_* the shell
// has (the binary gets a clean environment).
func TestShellSettingsDoNotLeak(t *testing.T) {
	t.Setenv("KAFKASEND_BROKERS", "127.0.0.1:1")
	t.Setenv("KAFKASEND_TOPIC", "from-the-shell")
	if r := run(t, nil, "", "send", "/x"); r.code != 2 || !strings.Contains(r.stderr, "KAFKASEND_BROKERS") {
		t.Errorf("exit %d stderr %q: the shell's KAFKASEND_BROKERS reached the binary", r.code, r.stderr)
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes several seconds")
	}
	r := run(t, nil, "", "demo", "--slow", "4", "--fast", "40", "--slow-delay", "1s", "--fast-delay", "20ms")
	t.Logf("demo took %s:\n%s", r.took.Round(time.Millisecond), r.stdout)
	if r.code != 0 {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	for _, row := range []string{"fast jobs p50", "fast jobs p95", "fast jobs p99", "slow jobs p95", "throughput", "peak in flight", "failed jobs"} {
		if !regexp.MustCompile(row + `\s+\S+.*\s+\S+`).MatchString(r.stdout) {
			t.Errorf("table lacks a row %q with two values", row)
		}
	}
	m := regexp.MustCompile(`fast-job p95 speed-up: (\d+)x`).FindStringSubmatch(r.stdout)
	if m == nil || m[1] == "0" || m[1] == "1" {
		t.Errorf("no speed-up of the fast jobs reported: %v", m)
	}
}
