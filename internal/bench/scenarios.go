package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"kafkasend.io/kafkasend/pkg/wire"
)

const mib = 1 << 20

func mibOf(b uint64) float64 { return round2(float64(b) / mib) }

// orDefault returns v, or def when v is zero.
func orDefault[T int | float64 | time.Duration | string](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// delayOr returns the --latency-ms value, or def when it was not given.
func (e *env) delayOr(def time.Duration) time.Duration {
	if e.opts.Delay < 0 {
		return def
	}
	return e.opts.Delay
}

// body returns n bytes of pseudo-random data.
func body(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'k', 'a', 'f', 'k', 'a', 's', 'e', 'n', 'd'})
	_, _ = r.Read(b)
	return b
}

// newJob returns a POST of b to the upstream path answering after delay.
func newJob(delay time.Duration, b []byte) *wire.Request {
	r := wire.NewRequest(http.MethodPost, jobPath(delay))
	r.Header = http.Header{"Content-Type": {"application/octet-stream"}}
	r.Body = b
	return r
}

// limiter paces submissions at perSecond; nil means no pacing.
func limiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), 1)
}

// submit sends n jobs made by mk, paced by lim (when not nil).
func submit(ctx context.Context, s *sender, lim *rate.Limiter, n int, mk func(i int) *wire.Request) error {
	for i := range n {
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				return fmt.Errorf("pacing: %w", err)
			}
		}
		if err := s.send(ctx, mk(i)); err != nil {
			return err
		}
	}
	return nil
}

// ---- mixed ----

// MixedRun is one run of the mixed scenario.
type MixedRun struct {
	MaxInFlight      int     `json:"max_in_flight"`
	Jobs             int     `json:"jobs"`
	FastP50Ms        float64 `json:"fast_p50_ms"`
	FastP95Ms        float64 `json:"fast_p95_ms"`
	FastP99Ms        float64 `json:"fast_p99_ms"`
	SlowP50Ms        float64 `json:"slow_p50_ms"`
	SlowP95Ms        float64 `json:"slow_p95_ms"`
	SlowP99Ms        float64 `json:"slow_p99_ms"`
	JobsPerS         float64 `json:"jobs_per_s"`
	DurationS        float64 `json:"duration_s"`
	PortalCPUS       float64 `json:"portal_cpu_s"`
	PortalPeakRSSMiB float64 `json:"portal_peak_rss_mib"`
}

// MixedResult compares the synchronous design (maxInFlight=1) with the
// async portal on interleaved slow and fast jobs.
type MixedResult struct {
	Common
	SlowJobs int      `json:"slow_jobs"`
	FastJobs int      `json:"fast_jobs"`
	SlowMs   int64    `json:"slow_ms"`
	FastMs   int64    `json:"fast_ms"`
	RatePerS float64  `json:"rate_per_s"`
	Async    MixedRun `json:"async"`
	Sync     MixedRun `json:"sync"`
	// FastP95Ratio is sync fast p95 over async fast p95.
	FastP95Ratio float64 `json:"fast_p95_ratio"`
}

// isSlowAt spreads slow jobs evenly among total jobs.
func isSlowAt(i, slow, total int) bool {
	return (i+1)*slow/total > i*slow/total
}

func runMixed(ctx context.Context, e *env, c Common) (Outcome, error) {
	o := e.opts
	total := o.Slow + o.Fast
	res := &MixedResult{Common: c, SlowJobs: o.Slow, FastJobs: o.Fast, SlowMs: o.SlowDelay.Milliseconds(),
		FastMs: o.FastDelay.Milliseconds(), RatePerS: orDefault(o.Rate, 50)}
	b := body(orDefault(o.BodyBytes, 256))
	run := func(name string, maxInFlight int, wait time.Duration) (*phaseResult, *sync.Map, MixedRun, error) {
		var slow sync.Map
		load := func(ctx context.Context, s *sender) error {
			return submit(ctx, s, limiter(res.RatePerS), total, func(i int) *wire.Request {
				if isSlowAt(i, o.Slow, total) {
					r := newJob(o.SlowDelay, b)
					slow.Store(r.ID, true)
					return r
				}
				return newJob(o.FastDelay, b)
			})
		}
		r, err := e.runPhase(ctx, phaseSpec{name: "mixed-" + name, portal: &portalSpec{maxInFlight: maxInFlight},
			load: load, wait: wait, bodyBytes: len(b)})
		if r == nil {
			return nil, nil, MixedRun{}, err
		}
		isSlow := func(id string) bool { _, ok := slow.Load(id); return ok }
		fast := Summarize(r.latencies(func(id string) bool { return !isSlow(id) }))
		sl := Summarize(r.latencies(isSlow))
		m := MixedRun{MaxInFlight: maxInFlight, Jobs: r.jobs,
			FastP50Ms: ms(fast.P50), FastP95Ms: ms(fast.P95), FastP99Ms: ms(fast.P99),
			SlowP50Ms: ms(sl.P50), SlowP95Ms: ms(sl.P95), SlowP99Ms: ms(sl.P99),
			JobsPerS: r.jobsPerSecond(), DurationS: round2(r.elapsed().Seconds()),
			PortalCPUS: round2(r.cpu.Seconds()), PortalPeakRSSMiB: mibOf(r.peakRSS)}
		return r, &slow, m, err
	}
	var submitTime time.Duration
	if res.RatePerS > 0 {
		submitTime = time.Duration(float64(total) / res.RatePerS * float64(time.Second))
	}
	ra, slowA, async, err := run("async", o.MaxInFlight, submitTime+o.SlowDelay+2*time.Minute)
	if ra != nil {
		res.Common.add(ra)
		res.Async = async
	}
	if err != nil {
		return Outcome{}, err
	}
	syncWait := time.Duration(o.Slow)*o.SlowDelay + time.Duration(o.Fast)*o.FastDelay + 2*time.Minute
	rs, slowS, syncRun, err := run("sync", 1, syncWait)
	if rs != nil {
		res.Common.add(rs)
		res.Sync = syncRun
	}
	if err != nil {
		return Outcome{}, err
	}
	res.FastP95Ratio = ratio(res.Sync.FastP95Ms, res.Async.FastP95Ms)
	draw := func(file string) error { return drawMixed(file, res, ra, slowA, rs, slowS) }
	return Outcome{Value: res, draw: draw}, nil
}

// ---- concurrency ----

// ConcurrencyResult says how many long calls one portal holds at once and
// what they cost.
type ConcurrencyResult struct {
	Common
	LatencyMs   int64 `json:"latency_ms"`
	MaxInFlight int   `json:"max_in_flight"`
	// PeakInFlight is the upstream's own count of concurrent calls.
	PeakInFlight int64 `json:"peak_in_flight"`
	// PortalPeakInFlightGauge is the highest kafkasend_portal_in_flight_jobs scraped.
	PortalPeakInFlightGauge float64 `json:"portal_peak_in_flight_gauge"`
	// SecondsToPeak from the first submission until the upstream held PeakInFlight calls.
	SecondsToPeak     float64 `json:"seconds_to_peak"`
	SubmitS           float64 `json:"submit_s"`
	PortalIdleRSSMiB  float64 `json:"portal_idle_rss_mib"`
	PortalPeakRSSMiB  float64 `json:"portal_peak_rss_mib"`
	RSSPerInFlightKiB float64 `json:"rss_per_in_flight_kib"`
	PortalCPUS        float64 `json:"portal_cpu_s"`
	LatencyP50Ms      float64 `json:"latency_p50_ms"`
	LatencyP99Ms      float64 `json:"latency_p99_ms"`
	DurationS         float64 `json:"duration_s"`
	OpenFilesLimit    uint64  `json:"open_files_limit"`
	samples           []sample
}

func runConcurrency(ctx context.Context, e *env, c Common) (Outcome, error) {
	o := e.opts
	n := orDefault(o.Jobs, 10000)
	delay := e.delayOr(30 * time.Second)
	res := &ConcurrencyResult{Common: c, LatencyMs: delay.Milliseconds(), MaxInFlight: max(n, o.MaxInFlight), OpenFilesLimit: fileLimit()}
	b := body(orDefault(o.BodyBytes, 256))
	var submitted time.Duration
	load := func(ctx context.Context, s *sender) error {
		start := time.Now()
		err := submit(ctx, s, limiter(o.Rate), n, func(int) *wire.Request { return newJob(delay, b) })
		submitted = time.Since(start)
		return err
	}
	r, err := e.runPhase(ctx, phaseSpec{name: "concurrency", portal: &portalSpec{maxInFlight: res.MaxInFlight},
		load: load, wait: delay + time.Duration(n)*time.Millisecond + 2*time.Minute, bodyBytes: len(b)})
	if r == nil {
		return Outcome{}, err
	}
	res.Common.add(r)
	lat := Summarize(r.latencies(nil))
	res.PeakInFlight = r.upstreamPeak
	res.PortalPeakInFlightGauge = r.peakPortalInFlight
	res.SubmitS = round2(submitted.Seconds())
	res.PortalIdleRSSMiB = mibOf(r.baseRSS)
	res.PortalPeakRSSMiB = mibOf(r.peakRSS)
	if r.upstreamPeak > 0 && r.peakRSS > r.baseRSS {
		res.RSSPerInFlightKiB = round2(float64(r.peakRSS-r.baseRSS) / 1024 / float64(r.upstreamPeak))
	}
	res.PortalCPUS = round2(r.cpu.Seconds())
	res.LatencyP50Ms, res.LatencyP99Ms = ms(lat.P50), ms(lat.P99)
	res.DurationS = round2(r.elapsed().Seconds())
	res.samples = r.samples
	// Samples are timed from the process start; the load began once it was ready.
	for _, s := range r.samples {
		if r.upstreamPeak > 0 && s.UpstreamActive >= r.upstreamPeak {
			res.SecondsToPeak = round2((s.At - r.start.Sub(r.procStarted)).Seconds())
			break
		}
	}
	return Outcome{Value: res, draw: func(file string) error { return drawConcurrency(file, res, r) }}, err
}

// ---- throughput ----

// ThroughputResult compares the portal's jobs/s with a bare Kafka echo
// relay of the same messages and with an HTTP relay making the same calls,
// on the same broker, and says where the CPU goes.
type ThroughputResult struct {
	Common
	BodyBytes         int     `json:"body_bytes"`
	LatencyMs         int64   `json:"latency_ms"`
	MaxInFlight       int     `json:"max_in_flight"`
	JobsPerS          float64 `json:"jobs_per_s"`
	EchoLimitJobsPerS float64 `json:"echo_limit_jobs_per_s"`
	Ratio             float64 `json:"ratio"`
	PortalCPUS        float64 `json:"portal_cpu_s"`
	PortalPeakRSSMiB  float64 `json:"portal_peak_rss_mib"`
	// PortalBackpressureS is kafkasend_portal_backpressure_seconds_total:
	// time partitions waited for an in-flight slot (summed over partitions).
	PortalBackpressureS float64 `json:"portal_backpressure_s"`
	PortalP50Ms         float64 `json:"portal_latency_p50_ms"`
	PortalP99Ms         float64 `json:"portal_latency_p99_ms"`
	EchoP50Ms           float64 `json:"echo_latency_p50_ms"`
	EchoP99Ms           float64 `json:"echo_latency_p99_ms"`

	// HTTPRelayJobsPerS is the HTTP relay's rate (the same calls to the same
	// upstream, with no portal work); HTTPRelayRatio is portal / HTTP relay.
	HTTPRelayJobsPerS float64 `json:"http_relay_jobs_per_s"`
	HTTPRelayRatio    float64 `json:"http_relay_ratio"`
	HTTPRelayP50Ms    float64 `json:"http_relay_latency_p50_ms"`
	HTTPRelayP99Ms    float64 `json:"http_relay_latency_p99_ms"`
	// CPU-µs per answered job of the portal run: the portal process (its
	// whole life, wait4 rusage), the upstream process and the bench
	// process (load generator and collector) over the measured window.
	PortalCPUUsPerJob   float64 `json:"portal_cpu_us_per_job"`
	PortalJobsPerCPUS   float64 `json:"portal_jobs_per_cpu_s"`
	UpstreamCPUUsPerJob float64 `json:"upstream_cpu_us_per_job"`
	LoadgenCPUUsPerJob  float64 `json:"loadgen_cpu_us_per_job"`
	// The same for the relay runs (relay process: its whole life).
	EchoRelayCPUUsPerJob         float64 `json:"echo_relay_cpu_us_per_job"`
	EchoLoadgenCPUUsPerJob       float64 `json:"echo_loadgen_cpu_us_per_job"`
	HTTPRelayCPUUsPerJob         float64 `json:"http_relay_cpu_us_per_job"`
	HTTPRelayUpstreamCPUUsPerJob float64 `json:"http_relay_upstream_cpu_us_per_job"`
	HTTPRelayLoadgenCPUUsPerJob  float64 `json:"http_relay_loadgen_cpu_us_per_job"`
	// A second portal run paced at 80 % of JobsPerS: the rate asked, the
	// rate reached, and the answer latency.
	PortalRateAt80PctJobsPerS float64 `json:"portal_rate_at_80pct_jobs_per_s"`
	PortalJobsPerSAt80Pct     float64 `json:"portal_jobs_per_s_at_80pct"`
	PortalP50MsAt80Pct        float64 `json:"portal_p50_ms_at_80pct"`
	PortalP99MsAt80Pct        float64 `json:"portal_p99_ms_at_80pct"`
	PortalCPUUsPerJobAt80Pct  float64 `json:"portal_cpu_us_per_job_at_80pct"`
}

// pacedLimiter paces at perSecond with a burst of 10 ms worth of jobs, so
// that thousands of jobs per second are reached despite timer granularity.
func pacedLimiter(perSecond float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/100)))
}

func runThroughput(ctx context.Context, e *env, c Common) (res Outcome, err error) {
	o := e.opts
	n := orDefault(o.Jobs, 50000)
	delay := e.delayOr(time.Millisecond)
	b := body(orDefault(o.BodyBytes, 1024))
	out := &ThroughputResult{Common: c, BodyBytes: len(b), LatencyMs: delay.Milliseconds(), MaxInFlight: o.MaxInFlight}
	// The upstream runs in its own process here, so that its CPU is
	// accounted apart from the load generator's.
	if e.remote, err = startRemoteUpstream(ctx, e.dir, e.opts.UpstreamH2C); err != nil {
		return Outcome{}, err
	}
	progressf(o, "throughput: upstream process pid %d at %s", e.remote.proc.cmd.Process.Pid, e.remote.proc.ready.URL)
	defer func() {
		if cerr := e.remote.close(); cerr != nil && err == nil {
			err = cerr
		}
		e.remote = nil
	}()
	loadAt := func(lim func() *rate.Limiter) func(ctx context.Context, s *sender) error {
		return func(ctx context.Context, s *sender) error {
			return submit(ctx, s, lim(), n, func(int) *wire.Request { return newJob(delay, b) })
		}
	}
	load := loadAt(func() *rate.Limiter { return limiter(o.Rate) })
	wait := time.Duration(n)*5*time.Millisecond + 2*time.Minute
	r, err := e.runPhase(ctx, phaseSpec{name: "throughput-portal", portal: &portalSpec{maxInFlight: o.MaxInFlight},
		load: load, wait: wait, bodyBytes: len(b)})
	if r == nil {
		return Outcome{}, err
	}
	out.Common.add(r)
	if err != nil {
		return Outcome{}, err
	}
	out.JobsPerS = r.jobsPerSecond()
	out.PortalCPUS, out.PortalPeakRSSMiB = round2(r.cpu.Seconds()), mibOf(r.peakRSS)
	out.PortalBackpressureS = round2(r.backpressure)
	lat := Summarize(r.latencies(nil))
	out.PortalP50Ms, out.PortalP99Ms = ms(lat.P50), ms(lat.P99)
	out.PortalCPUUsPerJob, out.LoadgenCPUUsPerJob = r.cpuPerJob(r.cpu), r.cpuPerJob(r.loadgenCPU)
	out.UpstreamCPUUsPerJob = r.cpuPerJob(r.upstreamCPU)
	if out.PortalCPUUsPerJob > 0 {
		out.PortalJobsPerCPUS = round2(1e6 / out.PortalCPUUsPerJob)
	}

	echo, err := e.runPhase(ctx, phaseSpec{name: "throughput-echo", load: load, wait: wait})
	if echo == nil {
		return Outcome{}, err
	}
	out.Common.add(echo)
	if err != nil {
		return Outcome{}, err
	}
	out.EchoLimitJobsPerS = echo.jobsPerSecond()
	lat = Summarize(echo.latencies(nil))
	out.EchoP50Ms, out.EchoP99Ms = ms(lat.P50), ms(lat.P99)
	out.Ratio = ratio(out.JobsPerS, out.EchoLimitJobsPerS)
	out.EchoRelayCPUUsPerJob, out.EchoLoadgenCPUUsPerJob = echo.cpuPerJob(echo.relayCPU), echo.cpuPerJob(echo.loadgenCPU)

	hr, err := e.runPhase(ctx, phaseSpec{name: "throughput-http-relay", relay: roleHTTPRelay,
		relayURL: e.upstreamURL() + jobPath(delay), relayMaxInFlight: o.MaxInFlight, load: load, wait: wait})
	if hr == nil {
		return Outcome{}, err
	}
	out.Common.add(hr)
	if err != nil {
		return Outcome{}, err
	}
	out.HTTPRelayJobsPerS = hr.jobsPerSecond()
	lat = Summarize(hr.latencies(nil))
	out.HTTPRelayP50Ms, out.HTTPRelayP99Ms = ms(lat.P50), ms(lat.P99)
	out.HTTPRelayRatio = ratio(out.JobsPerS, out.HTTPRelayJobsPerS)
	out.HTTPRelayCPUUsPerJob, out.HTTPRelayLoadgenCPUUsPerJob = hr.cpuPerJob(hr.relayCPU), hr.cpuPerJob(hr.loadgenCPU)
	out.HTTPRelayUpstreamCPUUsPerJob = hr.cpuPerJob(hr.upstreamCPU)

	if out.JobsPerS > 0 {
		out.PortalRateAt80PctJobsPerS = round2(0.8 * out.JobsPerS)
		paced, err := e.runPhase(ctx, phaseSpec{name: "throughput-portal-80pct", portal: &portalSpec{maxInFlight: o.MaxInFlight},
			load: loadAt(func() *rate.Limiter { return pacedLimiter(out.PortalRateAt80PctJobsPerS) }), wait: wait + time.Duration(float64(n)/out.PortalRateAt80PctJobsPerS*float64(time.Second)),
			bodyBytes: len(b)})
		if paced == nil {
			return Outcome{}, err
		}
		out.Common.add(paced)
		if err != nil {
			return Outcome{}, err
		}
		out.PortalJobsPerSAt80Pct = paced.jobsPerSecond()
		lat = Summarize(paced.latencies(nil))
		out.PortalP50MsAt80Pct, out.PortalP99MsAt80Pct = ms(lat.P50), ms(lat.P99)
		out.PortalCPUUsPerJobAt80Pct = paced.cpuPerJob(paced.cpu)
	}
	return Outcome{Value: out}, nil
}

// ---- overhead ----

// OverheadResult is the latency the portal and Kafka add to an upstream call.
type OverheadResult struct {
	Common
	RatePerS         float64 `json:"rate_per_s"`
	LatencyMs        int64   `json:"latency_ms"`
	OverheadP50Ms    float64 `json:"overhead_p50_ms"`
	OverheadP90Ms    float64 `json:"overhead_p90_ms"`
	OverheadP99Ms    float64 `json:"overhead_p99_ms"`
	OverheadMaxMs    float64 `json:"overhead_max_ms"`
	EndToEndP50Ms    float64 `json:"end_to_end_p50_ms"`
	EndToEndP99Ms    float64 `json:"end_to_end_p99_ms"`
	UpstreamP50Ms    float64 `json:"upstream_p50_ms"`
	PortalCPUS       float64 `json:"portal_cpu_s"`
	PortalPeakRSSMiB float64 `json:"portal_peak_rss_mib"`
}

func runOverhead(ctx context.Context, e *env, c Common) (Outcome, error) {
	o := e.opts
	n := orDefault(o.Jobs, 4000)
	delay := e.delayOr(10 * time.Millisecond)
	b := body(orDefault(o.BodyBytes, 256))
	res := &OverheadResult{Common: c, RatePerS: orDefault(o.Rate, 200), LatencyMs: delay.Milliseconds()}
	load := func(ctx context.Context, s *sender) error {
		return submit(ctx, s, limiter(res.RatePerS), n, func(int) *wire.Request { return newJob(delay, b) })
	}
	r, err := e.runPhase(ctx, phaseSpec{name: "overhead", portal: &portalSpec{maxInFlight: o.MaxInFlight},
		load: load, wait: 2 * time.Minute, bodyBytes: len(b)})
	if r == nil {
		return Outcome{}, err
	}
	res.Common.add(r)
	var over, up []time.Duration
	for _, id := range r.order {
		a, ok := r.arrivals[id]
		h, handled := e.up.handledTime(id)
		if !ok || !handled {
			continue
		}
		over = append(over, a.At.Sub(r.submitted[id])-h)
		up = append(up, h)
	}
	ov, lat := Summarize(over), Summarize(r.latencies(nil))
	res.OverheadP50Ms, res.OverheadP90Ms, res.OverheadP99Ms, res.OverheadMaxMs = ms(ov.P50), ms(ov.P90), ms(ov.P99), ms(ov.Max)
	res.EndToEndP50Ms, res.EndToEndP99Ms = ms(lat.P50), ms(lat.P99)
	res.UpstreamP50Ms = ms(Percentile(up, 50))
	res.PortalCPUS, res.PortalPeakRSSMiB = round2(r.cpu.Seconds()), mibOf(r.peakRSS)
	return Outcome{Value: res}, err
}

// ---- large ----

// LargeResult is one big request echoed back.
type LargeResult struct {
	Common
	BodyMiB          float64 `json:"body_mib"`
	DurationS        float64 `json:"duration_s"`
	MBPerS           float64 `json:"mb_per_s"`
	PortalPeakRSSMiB float64 `json:"portal_peak_rss_mib"`
	// RSSTargetMiB is 2 x body + 64 MiB.
	RSSTargetMiB float64 `json:"rss_target_mib"`
	PortalCPUS   float64 `json:"portal_cpu_s"`
}

func runLarge(ctx context.Context, e *env, c Common) (Outcome, error) {
	o := e.opts
	b := body(orDefault(o.BodyBytes, 256*mib))
	delay := e.delayOr(0)
	res := &LargeResult{Common: c, BodyMiB: round2(float64(len(b)) / mib), RSSTargetMiB: round2(2*float64(len(b))/mib + 64)}
	limit := int64(len(b)) + mib // body plus envelope
	load := func(ctx context.Context, s *sender) error { return s.send(ctx, newJob(delay, b)) }
	r, err := e.runPhase(ctx, phaseSpec{name: "large", portal: &portalSpec{maxInFlight: o.MaxInFlight,
		maxRequestBytes: limit, maxResponseBytes: limit, maxBytes: limit},
		load: load, wait: 10 * time.Minute, bodyBytes: len(b)})
	if r == nil {
		return Outcome{}, err
	}
	res.Common.add(r)
	res.DurationS = round2(r.elapsed().Seconds())
	if s := r.elapsed().Seconds(); s > 0 && r.answered > 0 {
		res.MBPerS = round2(float64(len(b)) / 1e6 / s)
	}
	res.PortalPeakRSSMiB = mibOf(r.peakRSS)
	res.PortalCPUS = round2(r.cpu.Seconds())
	return Outcome{Value: res}, err
}
