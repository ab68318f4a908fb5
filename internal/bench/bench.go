// Package bench is `kafkasend bench`: it measures a portal worker, run as
// its own OS process, against a loopback upstream with configurable latency
// and a real (or embedded) Kafka, in the scenarios of docs/benchmarks.md:
// mixed (slow and fast jobs, sync against async), concurrency (thousands of
// long calls at once), throughput (against a bare Kafka echo relay),
// overhead (what the portal adds to a call) and large (a 256 MiB job).
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rcrowley/go-metrics"
)

// Exit codes of Main.
const (
	ExitOK = 0
	// ExitFailed: a job was lost, answered twice or answered with an error,
	// or the run could not be set up.
	ExitFailed = 1
	// ExitUsage: bad command line.
	ExitUsage = 2
)

// Scenario names.
const (
	ScenarioMixed       = "mixed"
	ScenarioConcurrency = "concurrency"
	ScenarioThroughput  = "throughput"
	ScenarioOverhead    = "overhead"
	ScenarioLarge       = "large"
	ScenarioRebalance   = "rebalance"
)

// Options of one bench run; zero values mean the scenario's default.
type Options struct {
	Scenario string
	// Brokers of a real Kafka cluster; empty means an embedded kfake broker.
	Brokers []string
	JSON    bool
	// SVG is a file to draw the result into (mixed, concurrency).
	SVG string
	// Jobs for concurrency, throughput and overhead.
	Jobs int
	// Slow and Fast job counts of mixed, and their upstream latencies.
	Slow, Fast           int
	SlowDelay, FastDelay time.Duration
	// Delay is the upstream latency of concurrency, throughput, overhead and large.
	Delay time.Duration
	// Rate of submissions in jobs/s; negative means as fast as possible.
	Rate float64
	// MaxInFlight of the async portal (mixed, throughput, overhead).
	MaxInFlight int
	// BodyBytes of each request (the upstream echoes it).
	BodyBytes int
	// Partitions of the requests and replies topics.
	Partitions int
	// PortalBin is the portal binary; empty means build ./cmd/portal.
	PortalBin string
	// UpstreamH2C: the upstream also speaks HTTP/2 without TLS and the
	// portals call it so (upstream.http2 "always").
	UpstreamH2C bool
	// Variant of the rebalance scenario: timeline, kill or rollout.
	Variant string
	// Step between membership changes (rebalance).
	Step time.Duration
	// Profile is a directory for CPU and allocation profiles of the portal
	// (started with --pprof-bind-address) in every phase; empty means none.
	Profile string
	// Progress goes here (stderr).
	Progress io.Writer
}

const usage = `Usage: kafkasend bench --scenario NAME [--embedded | --brokers HOST:PORT] [options]

Runs a portal worker as its own process against a loopback upstream and
Kafka, and measures it. Scenarios:
  mixed        slow (5 s) and fast (50 ms) jobs interleaved, run with
               maxInFlight=1 (the old synchronous portal) and with the default
  concurrency  N jobs of 30 s at once: peak in-flight calls, portal RSS and CPU
  throughput   1 KiB jobs against a 1 ms upstream, beside a bare Kafka echo
               relay of the same messages (the ceiling for any portal) and an
               HTTP relay (the same HTTP calls with nothing else), then the
               portal again paced at 80 % of its throughput: jobs/s, CPU-µs
               per job of the portal, relays, upstream and load generator
               (each its own process), latency p50 at 80 %
  overhead     a steady 200 jobs/s against a 10 ms upstream: latency added
  large        one 256 MiB request echoed back: MB/s and portal peak RSS
  rebalance    30 slow (90 s) jobs and 20 fast jobs/s while workers join and
               leave one group (1→2→3→2→1, one change every 30 s); --variant
               kill adds a kill -9 of the worker holding handed-over jobs,
               rollout restarts three workers one by one: re-executions,
               cancellations, fast-job p95 per 5-s bucket, longest gap

Prints a table; with --json a JSON object as the last line. Exits 1 when a
job is lost, answered twice or answered with an error.

Options:
`

// Main runs `kafkasend bench` with args (those after "bench") and returns
// the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == ChildArg {
		return runChild(ctx, args[1:], stdout, stderr)
	}
	opts, code := parseArgs(args, stdout, stderr)
	if code >= 0 {
		return code
	}
	opts.Progress = stderr
	res, err := Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "kafkasend bench: %v\n", err)
		return ExitFailed
	}
	if err := writeResult(stdout, res.Value, opts.JSON); err != nil {
		fmt.Fprintf(stderr, "kafkasend bench: %v\n", err)
		return ExitFailed
	}
	if opts.SVG != "" && res.draw == nil {
		fmt.Fprintf(stderr, "kafkasend bench: the %s scenario has no drawing; --svg ignored\n", opts.Scenario)
	}
	if opts.SVG != "" && res.draw != nil {
		if err := res.draw(opts.SVG); err != nil {
			fmt.Fprintf(stderr, "kafkasend bench: drawing %s: %v\n", opts.SVG, err)
			return ExitFailed
		}
		fmt.Fprintf(stderr, "kafkasend bench: wrote %s\n", opts.SVG)
	}
	if problems := res.common().problems(); len(problems) > 0 {
		fmt.Fprintf(stderr, "kafkasend bench: FAILED: %s\n", strings.Join(problems, "; "))
		return ExitFailed
	}
	return ExitOK
}

// parseArgs returns the options, or an exit code >= 0 when Main must stop.
func parseArgs(args []string, stdout, stderr io.Writer) (Options, int) {
	var (
		o                       Options
		embedded                bool
		brokers                 string
		slowMs, fastMs, delayMs int
	)
	fs := flag.NewFlagSet("kafkasend bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Scenario, "scenario", "", "mixed, concurrency, throughput, overhead, large or rebalance (required)")
	fs.BoolVar(&embedded, "embedded", false, "use an in-process kfake broker on 127.0.0.1 (the default without --brokers)")
	fs.StringVar(&brokers, "brokers", "", "comma-separated Kafka bootstrap addresses; topics are created with unique names and deleted after")
	fs.BoolVar(&o.JSON, "json", false, "print the result as one JSON object on the last line of stdout")
	fs.StringVar(&o.SVG, "svg", "", "draw the result into this SVG file (mixed, concurrency)")
	fs.IntVar(&o.Jobs, "jobs", 0, "jobs (default: concurrency 10000, throughput 50000, overhead 4000)")
	fs.IntVar(&o.Slow, "slow", 10, "mixed: slow jobs")
	fs.IntVar(&o.Fast, "fast", 200, "mixed: fast jobs")
	fs.IntVar(&slowMs, "slow-ms", 5000, "mixed: upstream latency of slow jobs, ms")
	fs.IntVar(&fastMs, "fast-ms", 50, "mixed: upstream latency of fast jobs, ms")
	fs.IntVar(&delayMs, "latency-ms", -1, "upstream latency, ms (default: concurrency 30000, throughput 1, overhead 10, large 0)")
	fs.Float64Var(&o.Rate, "rate", 0, "submissions per second (default: mixed 50, overhead 200, others as fast as possible)")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", 100, "concurrency.maxInFlight of the async portal (concurrency uses max(this, jobs))")
	fs.IntVar(&o.BodyBytes, "body-bytes", 0, "request body bytes, echoed by the upstream (default: throughput 1024, large 268435456, others 256)")
	fs.IntVar(&o.Partitions, "partitions", 4, "partitions of the bench topics")
	fs.StringVar(&o.PortalBin, "portal-bin", "", "portal binary (default: go build ./cmd/portal into a temporary directory)")
	fs.BoolVar(&o.UpstreamH2C, "upstream-h2c", false, "the upstream also speaks HTTP/2 without TLS (h2c) and the portals call it with upstream.http2=always")
	fs.StringVar(&o.Variant, "variant", "", "rebalance: timeline (default), kill or rollout")
	fs.StringVar(&o.Profile, "profile", "", "write CPU and allocation profiles of the portal (and the relays) into this directory, one pair per phase; starts the portal with --pprof-bind-address, so only for our portal")
	var stepS float64
	fs.Float64Var(&stepS, "step-s", 30, "rebalance: seconds between membership changes")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, ExitOK
		}
		return o, ExitUsage
	}
	bad := func(format string, a ...any) (Options, int) {
		fmt.Fprintf(stderr, "kafkasend bench: "+format+"\n\n", a...)
		fs.Usage()
		return o, ExitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments %q", fs.Args())
	}
	switch o.Scenario {
	case ScenarioMixed, ScenarioConcurrency, ScenarioThroughput, ScenarioOverhead, ScenarioLarge, ScenarioRebalance:
	case "":
		return bad("--scenario is required")
	default:
		return bad("unknown scenario %q", o.Scenario)
	}
	if embedded && brokers != "" {
		return bad("--embedded and --brokers exclude each other")
	}
	for b := range strings.SplitSeq(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.Brokers = append(o.Brokers, b)
		}
	}
	if o.Slow < 0 || o.Fast < 0 || o.Slow+o.Fast == 0 {
		return bad("--slow and --fast must not be negative, and not both 0")
	}
	if slowMs < 0 || fastMs < 0 || o.Jobs < 0 || o.BodyBytes < 0 || o.MaxInFlight < 1 || o.Partitions < 1 {
		return bad("counts, sizes and latencies must not be negative; --max-in-flight and --partitions at least 1")
	}
	if o.Profile != "" && o.Scenario == ScenarioRebalance {
		// So that make bench BENCH_FLAGS="--profile DIR" runs every scenario.
		fmt.Fprintln(stderr, "kafkasend bench: the rebalance scenario takes no profiles; --profile ignored")
		o.Profile = ""
	}
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return bad("--profile: %v", err)
		}
	}
	if o.Scenario == ScenarioRebalance {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*int{"slow": &o.Slow, "slow-ms": &slowMs, "partitions": &o.Partitions} {
			if !set[name] {
				*v = map[string]int{"slow": 30, "slow-ms": 90000, "partitions": 6}[name]
			}
		}
		if !set["rate"] {
			o.Rate = 20
		}
		switch o.Variant {
		case "", RebalanceTimeline, RebalanceKill, RebalanceRollout:
		default:
			return bad("unknown --variant %q", o.Variant)
		}
		if stepS <= 0 {
			return bad("--step-s must be positive")
		}
	}
	o.Step = time.Duration(stepS * float64(time.Second))
	o.SlowDelay = time.Duration(slowMs) * time.Millisecond
	o.FastDelay = time.Duration(fastMs) * time.Millisecond
	if delayMs >= 0 {
		o.Delay = time.Duration(delayMs) * time.Millisecond
	} else {
		o.Delay = -1
	}
	return o, -1
}

// Outcome is what Run returns: the result to print and, for some
// scenarios, a drawing.
type Outcome struct {
	// Value is the scenario's result struct (JSON-encodable).
	Value any
	draw  func(file string) error
}

func (o Outcome) common() *Common {
	if c, ok := o.Value.(interface{ common() *Common }); ok {
		return c.common()
	}
	return &Common{}
}

// Common is reported by every scenario.
type Common struct {
	Scenario  string `json:"scenario"`
	Broker    string `json:"broker"`
	GoVersion string `json:"go_version"`
	CPUs      int    `json:"cpus"`
	// Jobs submitted (over all runs of the scenario), answered, lost (no
	// answer by the end), answered more than once, and answered with an
	// error kind or a status other than 200.
	Jobs           int `json:"jobs"`
	Answered       int `json:"answered"`
	Lost           int `json:"lost"`
	Duplicates     int `json:"duplicates"`
	ErrorResponses int `json:"error_responses"`
	// ReplyErrors counts reply records that could not be read.
	ReplyErrors int `json:"reply_errors"`
}

func (c *Common) common() *Common { return c }

func (c *Common) add(r *phaseResult) {
	c.Jobs += r.jobs
	c.Answered += r.answered
	c.Lost += r.lost
	c.Duplicates += r.duplicates
	c.ErrorResponses += r.failed
	c.ReplyErrors += len(r.readErrs)
}

func (c *Common) problems() []string {
	var p []string
	if c.Lost > 0 {
		p = append(p, fmt.Sprintf("%d of %d jobs lost (no answer)", c.Lost, c.Jobs))
	}
	if c.Duplicates > 0 {
		p = append(p, fmt.Sprintf("%d jobs answered twice", c.Duplicates))
	}
	if c.ErrorResponses > 0 {
		p = append(p, fmt.Sprintf("%d jobs answered with an error", c.ErrorResponses))
	}
	if c.ReplyErrors > 0 {
		p = append(p, fmt.Sprintf("%d unreadable reply records", c.ReplyErrors))
	}
	return p
}

// Run runs one scenario.
func Run(ctx context.Context, o Options) (Outcome, error) {
	// sarama's go-metrics meters cost CPU on every record; the bench has no use for them.
	metrics.UseNilMetrics = true
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	raiseFileLimit(o.Progress)
	e, err := newEnv(ctx, o)
	if err != nil {
		return Outcome{}, err
	}
	defer e.close()
	c := Common{Scenario: o.Scenario, Broker: e.cl.kind, GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	switch o.Scenario {
	case ScenarioMixed:
		return runMixed(ctx, e, c)
	case ScenarioConcurrency:
		return runConcurrency(ctx, e, c)
	case ScenarioThroughput:
		return runThroughput(ctx, e, c)
	case ScenarioOverhead:
		return runOverhead(ctx, e, c)
	case ScenarioLarge:
		return runLarge(ctx, e, c)
	case ScenarioRebalance:
		return runRebalance(ctx, e, c)
	}
	return Outcome{}, fmt.Errorf("unknown scenario %q", o.Scenario)
}

// raiseFileLimit lifts the soft open-files limit to the hard one: thousands
// of concurrent upstream calls need as many sockets in the bench (server
// side) and in the portal process, which inherits the limit.
func raiseFileLimit(progress io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			fmt.Fprintf(progress, "bench: raising the open-files limit: %v\n", err)
		}
	}
}

// fileLimit returns the soft open-files limit.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}

func progressf(o Options, format string, a ...any) {
	fmt.Fprintf(o.Progress, "bench: "+format+"\n", a...)
}
