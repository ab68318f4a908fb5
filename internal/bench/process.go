package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
)

// portalSpec is what one portal process is configured with.
type portalSpec struct {
	brokers          []string
	group            string
	requests         string
	replies          string
	upstreamURL      string
	upstreamHTTP2    string // upstream.http2
	maxInFlight      int
	maxRequestBytes  int64
	maxResponseBytes int64
	maxBytes         int64
	// pprofAddr, when set, is passed as --pprof-bind-address (our portal's
	// flag; a portal of another make need not know it, so only --profile
	// sets it).
	pprofAddr string
}

// config renders the portal's configuration file: the project's defaults
// with the bench's topics, upstream and limits.
func (s portalSpec) config() config.Config {
	c := config.Default()
	c.Kafka.Brokers = s.brokers
	c.Kafka.ConsumerGroup = s.group
	c.Kafka.ClientID = "kafkasend-bench-portal"
	c.Topics.Requests = s.requests
	c.Topics.Replies = s.replies
	c.Upstream.BaseURL = s.upstreamURL
	c.Upstream.AllowInsecureHTTP = true
	c.Upstream.HTTP2 = s.upstreamHTTP2
	c.Concurrency.MaxInFlight = s.maxInFlight
	if s.maxRequestBytes > 0 {
		c.Upstream.MaxRequestBytes = s.maxRequestBytes
	}
	if s.maxResponseBytes > 0 {
		c.Upstream.MaxResponseBytes = s.maxResponseBytes
	}
	if s.maxBytes > 0 {
		c.Concurrency.MaxBytes = s.maxBytes
	}
	c.Concurrency.MaxBytes = max(c.Concurrency.MaxBytes, c.Upstream.MaxRequestBytes)
	// Shut down promptly once the run is over: every job is answered by then.
	c.Timeouts.Drain = metav1.Duration{Duration: 5 * time.Second}
	return c
}

// sample is one observation of the portal process and the upstream.
type sample struct {
	At time.Duration // since the process started
	// RSS of the portal process, bytes.
	RSS uint64
	// PortalInFlight is kafkasend_portal_in_flight_jobs (-1 when not scraped).
	PortalInFlight float64
	// UpstreamActive is the number of calls the upstream was handling.
	UpstreamActive int64
}

// portalProcess is a portal worker running as its own OS process.
type portalProcess struct {
	cmd  *exec.Cmd
	addr string // health and metrics
	// pprofAddr serves /debug/pprof/ when the portal was started with it.
	pprofAddr string
	logPath   string
	started   time.Time
	exited    chan struct{}
	waitErr   error

	stopSampling context.CancelFunc
	sampled      chan struct{}
	mu           sync.Mutex
	samples      []sample
	peakInFlight float64

	// Set when the process has exited.
	cpu     time.Duration
	peakRSS uint64
}

// buildPortal compiles cmd/portal into dir; the working directory must be
// inside the kafkasend module.
func buildPortal(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "portal")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "kafkasend.io/kafkasend/cmd/portal").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the portal (run inside the kafkasend module or pass --portal-bin): %w\n%s", err, out)
	}
	return bin, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startPortal writes spec's configuration into dir, starts bin and waits
// until the portal has joined its consumer group. upstreamActive is sampled
// with the process.
func startPortal(ctx context.Context, bin, dir, name string, spec portalSpec, upstreamActive func() int64) (*portalProcess, error) {
	data, err := spec.config().Marshal()
	if err != nil {
		return nil, fmt.Errorf("rendering the portal configuration: %w", err)
	}
	cfgFile := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		return nil, fmt.Errorf("writing the portal configuration: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the portal log: %w", err)
	}
	p := &portalProcess{addr: addr, pprofAddr: spec.pprofAddr, logPath: logPath, exited: make(chan struct{}), sampled: make(chan struct{})}
	p.cmd = exec.Command(bin, portalArgs(cfgFile, addr, spec)...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the portal %s: %w", bin, err)
	}
	p.started = time.Now()
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		if st := p.cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
			if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
				p.peakRSS = uint64(ru.Maxrss) * 1024 // KiB on Linux
			}
		}
		close(p.exited)
	}()
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		p.kill()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	p.stopSampling = cancel
	go p.sample(sctx, upstreamActive)
	return p, nil
}

// portalArgs is the portal's command line: the configuration file, the
// health and metrics address and the log level, which any portal of the
// same contract takes (a --portal-bin of another make, too), and
// --pprof-bind-address only when profiles were asked for.
func portalArgs(cfgFile, addr string, spec portalSpec) []string {
	args := []string{"--config", cfgFile, "--health-bind-address", addr, "--metrics-bind-address", addr, "--log-level", "info"}
	if spec.pprofAddr != "" {
		args = append(args, "--pprof-bind-address", spec.pprofAddr)
	}
	return args
}

func (p *portalProcess) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("portal exited before it was ready (%w); log:\n%s", p.waitErr, p.logTail(30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("portal not ready within %s; log:\n%s", timeout, p.logTail(30))
		}
	}
}

// sample records RSS every 100 ms and the portal's in-flight gauge every
// 500 ms (scraping /metrics costs the portal CPU) until ctx ends.
func (p *portalProcess) sample(ctx context.Context, upstreamActive func() int64) {
	defer close(p.sampled)
	proc, err := procfs.NewProc(p.cmd.Process.Pid)
	if err != nil {
		return
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		s := sample{At: time.Since(p.started), PortalInFlight: -1}
		if st, err := proc.NewStatus(); err == nil {
			s.RSS = st.VmRSS
		}
		if upstreamActive != nil {
			s.UpstreamActive = upstreamActive()
		}
		if i%5 == 0 {
			if text, err := scrape(ctx, client, p.addr); err == nil {
				if v, ok := metricValue(text, "kafkasend_portal_in_flight_jobs"); ok {
					s.PortalInFlight = v
				}
			}
		}
		p.mu.Lock()
		p.samples = append(p.samples, s)
		p.peakInFlight = max(p.peakInFlight, s.PortalInFlight)
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// metrics returns the portal's /metrics text.
func (p *portalProcess) metrics(ctx context.Context) (string, error) {
	return scrape(ctx, &http.Client{Timeout: 5 * time.Second}, p.addr)
}

func scrape(ctx context.Context, client *http.Client, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", fmt.Errorf("building the metrics request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("scraping the portal: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading the portal's metrics: %w", err)
	}
	return string(b), nil
}

// metricValue sums every series of metric name in a Prometheus text
// exposition (all label sets).
func metricValue(text, name string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// stop ends sampling, sends SIGTERM and waits for the exit (SIGKILL after
// timeout); the CPU time and peak RSS come from the kernel's accounting of
// the exited process.
func (p *portalProcess) stop(timeout time.Duration) error {
	if p.stopSampling != nil {
		p.stopSampling()
		<-p.sampled
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("portal did not stop within %s of SIGTERM; killed it", timeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("portal exited with %w; log:\n%s", p.waitErr, p.logTail(30))
	}
	return nil
}

func (p *portalProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// snapshot returns the samples so far and the highest in-flight gauge seen.
func (p *portalProcess) snapshot() ([]sample, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sample(nil), p.samples...), p.peakInFlight
}

// logTail returns the last n lines of the portal's log.
func (p *portalProcess) logTail(n int) string { return tail(p.logPath, n) }
