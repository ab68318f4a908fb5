package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestMain lets the test binary serve as the bench's helper processes
// (upstream, relays), which the bench starts by re-running its own
// executable as "EXE bench __child SPEC".
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == ChildArg {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// buildPortalForTest compiles cmd/portal into a temporary directory.
func buildPortalForTest(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portal")
	if out, err := exec.Command("go", "build", "-o", bin, "kafkasend.io/kafkasend/cmd/portal").CombinedOutput(); err != nil {
		t.Fatalf("building the portal: %v\n%s", err, out)
	}
	return bin
}

// TestMixedSmokeEmbedded runs the mixed scenario end to end (portal
// process, kfake, upstream) with tiny counts and latencies.
func TestMixedSmokeEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the portal process")
	}
	bin := buildPortalForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	svg := filepath.Join(t.TempDir(), "mixed.svg")
	var stdout, stderr strings.Builder
	code := Main(ctx, []string{"--scenario", "mixed", "--embedded", "--json", "--portal-bin", bin,
		"--slow", "2", "--fast", "10", "--slow-ms", "400", "--fast-ms", "10", "--rate", "100",
		"--svg", svg}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res MixedResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line of stdout is not the JSON result: %v\n%s", err, stdout.String())
	}
	if res.Scenario != "mixed" || res.Broker != BrokerKfake || res.Jobs != 24 || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("result %+v: want 24 jobs on kfake, none lost or duplicated", res.Common)
	}
	// The synchronous run queues fast jobs behind slow ones; the async one does not.
	if res.Async.FastP95Ms <= 0 || res.Async.SlowP95Ms < 400 || res.Sync.FastP95Ms <= res.Async.FastP95Ms {
		t.Errorf("async fast p95 %v ms, slow p95 %v ms; sync fast p95 %v ms", res.Async.FastP95Ms, res.Async.SlowP95Ms, res.Sync.FastP95Ms)
	}
	if fi, err := os.Stat(svg); err != nil || fi.Size() < 1000 {
		t.Errorf("--svg wrote no drawing: %v", err)
	}
}

// TestThroughputSmokeEmbedded runs the throughput scenario with a few jobs:
// the portal, the echo relay and the HTTP relay (each its own process, the
// upstream too) answer every job, the CPU figures are reported, and
// --profile writes CPU and allocation profiles of the portal and relays.
func TestThroughputSmokeEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the portal process")
	}
	bin := buildPortalForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	profiles := filepath.Join(t.TempDir(), "profiles")
	var stdout, stderr strings.Builder
	code := Main(ctx, []string{"--scenario", "throughput", "--embedded", "--json", "--portal-bin", bin,
		"--jobs", "200", "--partitions", "2", "--max-in-flight", "20", "--profile", profiles}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := []byte(lines[len(lines)-1])
	var res ThroughputResult
	if err := json.Unmarshal(last, &res); err != nil {
		t.Fatalf("last line of stdout is not the JSON result: %v\n%s", err, stdout.String())
	}
	// Four runs of 200 jobs: portal, echo relay, HTTP relay, portal at 80 %.
	if res.Jobs != 800 || res.Answered != 800 || res.Lost != 0 || res.Duplicates != 0 || res.ErrorResponses != 0 || res.ReplyErrors != 0 {
		t.Errorf("result %+v: want 800 jobs answered once each", res.Common)
	}
	if res.JobsPerS <= 0 || res.EchoLimitJobsPerS <= 0 || res.HTTPRelayJobsPerS <= 0 || res.HTTPRelayRatio <= 0 {
		t.Errorf("jobs/s portal %v, echo %v, HTTP relay %v (ratio %v): want all positive",
			res.JobsPerS, res.EchoLimitJobsPerS, res.HTTPRelayJobsPerS, res.HTTPRelayRatio)
	}
	// Every process was measured: the portal and relays by wait4, the
	// bench's load generator by getrusage (all microsecond counts).
	if res.PortalCPUUsPerJob <= 0 || res.LoadgenCPUUsPerJob <= 0 || res.EchoRelayCPUUsPerJob <= 0 || res.HTTPRelayCPUUsPerJob <= 0 {
		t.Errorf("CPU-µs per job: portal %v, load generator %v, echo relay %v, HTTP relay %v: want all positive",
			res.PortalCPUUsPerJob, res.LoadgenCPUUsPerJob, res.EchoRelayCPUUsPerJob, res.HTTPRelayCPUUsPerJob)
	}
	if want := round2(0.8 * res.JobsPerS); res.PortalRateAt80PctJobsPerS != want || res.PortalP50MsAt80Pct <= 0 {
		t.Errorf("80 %% run at %v jobs/s (want %v), p50 %v ms", res.PortalRateAt80PctJobsPerS, want, res.PortalP50MsAt80Pct)
	}
	var keys map[string]any
	if err := json.Unmarshal(last, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"jobs_per_s", "echo_limit_jobs_per_s", "ratio", "portal_cpu_s", "http_relay_jobs_per_s",
		"http_relay_ratio", "portal_cpu_us_per_job", "upstream_cpu_us_per_job", "loadgen_cpu_us_per_job",
		"echo_relay_cpu_us_per_job", "http_relay_cpu_us_per_job", "portal_p50_ms_at_80pct"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON result has no key %q", k)
		}
	}
	for _, name := range []string{"throughput-portal", "throughput-echo", "throughput-http-relay", "throughput-portal-80pct"} {
		for _, kind := range []string{"cpu", "allocs"} {
			f, err := os.Open(filepath.Join(profiles, name+"."+kind+".pb.gz"))
			if err != nil {
				t.Errorf("--profile: %v", err)
				continue
			}
			prof, err := profile.Parse(f)
			f.Close()
			switch {
			case err != nil:
				t.Errorf("--profile: %s %s: %v", name, kind, err)
			case kind == "cpu" && (prof.DurationNanos < int64(time.Second) || len(prof.SampleType) == 0 || prof.SampleType[0].Type != "samples"):
				t.Errorf("--profile: %s CPU profile of %v, types %v: want the merged slices, at least 1 s", name, time.Duration(prof.DurationNanos), prof.SampleType)
			case kind == "allocs" && len(prof.Sample) == 0:
				t.Errorf("--profile: %s allocation profile has no samples", name)
			}
		}
	}
	// hack/pprof-top.sh turns a profile into the Markdown table of docs/benchmarks.md.
	out, err := exec.Command("bash", "../../hack/pprof-top.sh", "-n", "3", "--cum",
		filepath.Join(profiles, "throughput-portal.allocs.pb.gz")).CombinedOutput()
	if err != nil {
		t.Fatalf("hack/pprof-top.sh: %v\n%s", err, out)
	}
	var rows int
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| flat ") {
			rows++
		}
	}
	if !strings.Contains(string(out), "| flat | flat% | sum% | cum | cum% | function |") || rows != 3 {
		t.Errorf("hack/pprof-top.sh -n 3 printed %d rows, want a table of 3:\n%s", rows, out)
	}
}
