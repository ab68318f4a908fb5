package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/rcrowley/go-metrics"
)

// ChildArg is the hidden first argument of Main that runs one helper
// process of a bench run instead of a scenario: the upstream, the echo relay or the HTTP
// relay, each in its own OS process so that the kernel accounts its CPU
// apart from the load generator's. The bench starts these by re-running
// its own executable as `EXE bench __child SPEC`; a program that embeds
// the bench must hand such a command line to Main (see smoke_test.go's
// TestMain).
const ChildArg = "__child"

// Child roles.
const (
	roleUpstream  = "upstream"
	roleEchoRelay = "echo-relay"
	roleHTTPRelay = "http-relay"
)

// childSpec configures a helper process; it travels as one JSON argument.
type childSpec struct {
	Role string `json:"role"`
	// H2C: an upstream also speaks HTTP/2 without TLS.
	H2C             bool     `json:"h2c,omitempty"`
	Brokers         []string `json:"brokers,omitempty"`
	Group           string   `json:"group,omitempty"`
	Requests        string   `json:"requests,omitempty"`
	Replies         string   `json:"replies,omitempty"`
	MaxMessageBytes int      `json:"maxMessageBytes,omitempty"`
	// HTTP relay: the upstream's URL (base and job path) and the calls in flight.
	URL         string `json:"url,omitempty"`
	MaxInFlight int    `json:"maxInFlight,omitempty"`
	// PprofAddr, when set, serves Go's /debug/pprof/ of the helper (--profile).
	PprofAddr string `json:"pprofAddr,omitempty"`
}

// childReady is the one line a helper prints on stdout once it serves.
type childReady struct {
	// URL of the upstream; Stats of its counters (upstream role).
	URL   string `json:"url,omitempty"`
	Stats string `json:"stats,omitempty"`
}

// selfCommand returns the command line that runs a helper process: this
// executable with "bench __child SPEC".
var selfCommand = func(spec string) (string, []string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("finding the bench executable: %w", err)
	}
	return exe, []string{"bench", ChildArg, spec}, nil
}

// runChild is the body of a helper process. It serves until ctx ends or
// stdin closes (the parent's way to stop it, and what happens when the
// parent dies), then shuts down and returns the exit code.
func runChild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "kafkasend bench %s: want one JSON argument\n", ChildArg)
		return ExitUsage
	}
	// As in the portal (cmd/portal) and Run: no go-metrics meters in sarama.
	metrics.UseNilMetrics = true
	var spec childSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		fmt.Fprintf(stderr, "kafkasend bench %s: %v\n", ChildArg, err)
		return ExitUsage
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	err := serveChild(ctx, spec, func(r childReady) error {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encoding the ready line: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", line)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "kafkasend bench %s %s: %v\n", ChildArg, spec.Role, err)
		return ExitFailed
	}
	return ExitOK
}

func serveChild(ctx context.Context, spec childSpec, ready func(childReady) error) error {
	if spec.PprofAddr != "" {
		stop, err := serveProfiles(spec.PprofAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	switch spec.Role {
	case roleUpstream:
		return serveUpstreamChild(ctx, spec.H2C, ready)
	case roleEchoRelay:
		return serveRelay(ctx, ready, func() (relay, error) {
			return startEchoRelay(ctx, spec.Brokers, spec.Group, spec.Requests, spec.Replies, spec.MaxMessageBytes)
		})
	case roleHTTPRelay:
		return serveRelay(ctx, ready, func() (relay, error) { return startHTTPRelay(ctx, spec) })
	}
	return fmt.Errorf("unknown role %q", spec.Role)
}

// relay is a running echo or HTTP relay.
type relay interface{ close() error }

// serveRelay runs the relay start makes until ctx ends.
func serveRelay(ctx context.Context, ready func(childReady) error, start func() (relay, error)) error {
	r, err := start()
	if err != nil {
		return err
	}
	if err := ready(childReady{}); err != nil {
		_ = r.close()
		return err
	}
	<-ctx.Done()
	return r.close()
}

// serveProfiles serves Go's runtime profiles on addr until stop.
func serveProfiles(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for profiles: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// childProcess is a helper process as its parent sees it.
type childProcess struct {
	role string
	cmd  *exec.Cmd
	// pprofAddr serves the helper's /debug/pprof/ when it was asked to.
	pprofAddr string
	stdin     io.WriteCloser
	logPath   string
	ready     childReady
	exited    chan struct{}
	waitErr   error
	// cpu is user + system time of the exited process (wait4 rusage).
	cpu time.Duration
}

// startChild runs a helper with spec and waits for its ready line.
func startChild(ctx context.Context, dir, name string, spec childSpec) (*childProcess, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s spec: %w", spec.Role, err)
	}
	exe, args, err := selfCommand(string(data))
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the %s log: %w", spec.Role, err)
	}
	c := &childProcess{role: spec.Role, pprofAddr: spec.PprofAddr, logPath: logPath, exited: make(chan struct{})}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Stderr = logFile
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the %s: %w", spec.Role, err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the %s: %w", spec.Role, err)
	}
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the %s (%s): %w", spec.Role, exe, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		c.waitErr = c.cmd.Wait()
		logFile.Close()
		if st := c.cmd.ProcessState; st != nil {
			c.cpu = st.UserTime() + st.SystemTime()
		}
		close(c.exited)
	}()
	fail := func(err error) (*childProcess, error) {
		c.kill()
		return nil, fmt.Errorf("%s: %w; log:\n%s", spec.Role, err, tail(c.logPath, 30))
	}
	select {
	case line, ok := <-lines:
		if !ok {
			<-c.exited
			werr := c.waitErr
			if werr == nil {
				werr = errors.New("exit status 0")
			}
			return nil, fmt.Errorf("%s exited before it was ready (%w); log:\n%s", spec.Role, werr, tail(c.logPath, 30))
		}
		if err := json.Unmarshal([]byte(line), &c.ready); err != nil {
			return fail(fmt.Errorf("reading its ready line %q: %w", line, err))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(90 * time.Second):
		return fail(errors.New("not ready within 90s"))
	}
	return c, nil
}

// cpuNow is the CPU time the running process used so far (from
// /proc/PID/stat, in clock ticks of 10 ms).
func (c *childProcess) cpuNow() (time.Duration, bool) {
	return procCPU(c.cmd.Process.Pid)
}

// stop closes the helper's stdin and waits for it to exit (SIGKILL after
// timeout).
func (c *childProcess) stop(timeout time.Duration) error {
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s did not stop within %s; killed it", c.role, timeout)
	}
	if c.waitErr != nil {
		return fmt.Errorf("%s exited with %w; log:\n%s", c.role, c.waitErr, tail(c.logPath, 30))
	}
	return nil
}

func (c *childProcess) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// procCPU returns user + system time of a running process.
func procCPU(pid int) (time.Duration, bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), true
}

// selfCPU returns user + system time of the bench process itself (all its
// threads; helper processes are not included).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
