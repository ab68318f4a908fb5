package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"kafkasend.io/kafkasend/pkg/wire"
)

// defaultMaxMessageBytes is the portal's default chunk bound (900 KiB).
const defaultMaxMessageBytes = 900 * 1024

// env is what the runs of one scenario share: the Kafka cluster, the
// upstream, the portal binary and a scratch directory.
type env struct {
	opts      Options
	cl        *cluster
	up        *upstream
	dir       string
	portalBin string
	// remote, when set, is the upstream the phases use instead of up: the
	// same server in a helper process, so that its CPU is accounted apart.
	remote *remoteUpstream
}

func (e *env) upstreamURL() string {
	if e.remote != nil {
		return e.remote.proc.ready.URL
	}
	return e.up.url
}

// upstreamActive is the number of calls the upstream is handling (0 when
// a helper upstream cannot be read).
func (e *env) upstreamActive() int64 {
	if e.remote != nil {
		st, _ := e.remote.stats()
		return st.Active
	}
	return e.up.active.Load()
}

func (e *env) upstreamPeak() int64 {
	if e.remote != nil {
		st, _ := e.remote.stats()
		return st.Peak
	}
	return e.up.peak.Load()
}

func (e *env) resetUpstreamPeak() {
	if e.remote != nil {
		if err := e.remote.resetPeak(); err != nil {
			progressf(e.opts, "%v", err)
		}
		return
	}
	e.up.peak.Store(0)
}

// upstreamCPU is the CPU time a helper upstream used so far.
func (e *env) upstreamCPU() (time.Duration, bool) {
	if e.remote == nil {
		return 0, false
	}
	return e.remote.proc.cpuNow()
}

func newEnv(ctx context.Context, o Options) (*env, error) {
	dir, err := os.MkdirTemp("", "kafkasend-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating a scratch directory: %w", err)
	}
	e := &env{opts: o, dir: dir, portalBin: o.PortalBin}
	if e.portalBin == "" {
		progressf(o, "building the portal")
		if e.portalBin, err = buildPortal(ctx, dir); err != nil {
			e.close()
			return nil, err
		}
	}
	if e.cl, err = openCluster(o.Brokers); err != nil {
		e.close()
		return nil, err
	}
	if e.up, err = startUpstream(o.UpstreamH2C); err != nil {
		e.close()
		return nil, err
	}
	progressf(o, "broker %s at %v, upstream %s, portal %s, open-files limit %d", e.cl.kind, e.cl.brokers, e.up.url, e.portalBin, fileLimit())
	return e, nil
}

func (e *env) close() {
	if e.up != nil {
		e.up.close()
	}
	if e.cl != nil {
		if err := e.cl.close(); err != nil {
			progressf(e.opts, "cleaning up Kafka: %v", err)
		}
	}
	_ = os.RemoveAll(e.dir)
}

// phaseSpec is one measured run: a portal (or a relay) between a fresh
// requests topic and a fresh replies topic, and a load.
type phaseSpec struct {
	name string
	// portal configures the portal process; nil runs a relay instead.
	portal *portalSpec
	// relay is the helper run when portal is nil: roleEchoRelay (the
	// default) or roleHTTPRelay, which calls relayURL with relayMaxInFlight
	// calls at most.
	relay            string
	relayURL         string
	relayMaxInFlight int
	// topicConfigs apply to both topics.
	topicConfigs    map[string]string
	maxMessageBytes int
	// load submits the jobs.
	load func(ctx context.Context, s *sender) error
	// wait bounds how long answers are awaited once load returned.
	wait time.Duration
	// bodyBytes is the size of each answer's body (the upstream echoes);
	// another size counts as an error response. Portal phases only.
	bodyBytes int
	// stopTimeout bounds the portal's shutdown (at least 30 s).
	stopTimeout time.Duration
}

// phaseResult is what one phase measured.
type phaseResult struct {
	name      string
	submitted map[string]time.Time
	order     []string
	arrivals  map[string]arrival
	// jobs submitted, answered, lost, duplicates, answered with an error.
	jobs, answered, lost, duplicates, failed int
	readErrs                                 []error
	// first submission and last answer.
	start, end time.Time

	// Of the portal process.
	cpu                time.Duration
	peakRSS            uint64
	procStarted        time.Time
	baseRSS            uint64
	samples            []sample
	peakPortalInFlight float64
	upstreamPeak       int64
	retries            float64
	backpressure       float64

	// CPU time over the measured window (first submission to the last
	// answer awaited): of the bench process (load generator and
	// collector) and of a helper upstream (0 without one).
	loadgenCPU  time.Duration
	upstreamCPU time.Duration
	// relayCPU is the relay process's CPU time over its life (wait4).
	relayCPU time.Duration
}

// cpuPerJob returns d per answered job in microseconds (0 when none).
func (r *phaseResult) cpuPerJob(d time.Duration) float64 {
	if r.answered == 0 {
		return 0
	}
	return round2(float64(d.Microseconds()) / float64(r.answered))
}

// elapsed is the time from the first submission to the last answer.
func (r *phaseResult) elapsed() time.Duration { return r.end.Sub(r.start) }

// jobsPerSecond is answers per second of elapsed time.
func (r *phaseResult) jobsPerSecond() float64 {
	if s := r.elapsed().Seconds(); s > 0 {
		return round2(float64(r.answered) / s)
	}
	return 0
}

// latencies returns submission-to-answer times of the answered jobs that
// keep selects (all when keep is nil).
func (r *phaseResult) latencies(keep func(id string) bool) []time.Duration {
	var out []time.Duration
	for _, id := range r.order {
		a, ok := r.arrivals[id]
		if !ok || (keep != nil && !keep(id)) {
			continue
		}
		out = append(out, a.At.Sub(r.submitted[id]))
	}
	return out
}

// runPhase runs one phase end to end and always cleans up its processes.
func (e *env) runPhase(ctx context.Context, p phaseSpec) (*phaseResult, error) {
	if p.maxMessageBytes == 0 {
		p.maxMessageBytes = defaultMaxMessageBytes
	}
	parts := int32(e.opts.Partitions)
	requests, err := e.cl.createTopic(p.name+"-requests", parts, p.topicConfigs)
	if err != nil {
		return nil, err
	}
	replies, err := e.cl.createTopic(p.name+"-replies", parts, p.topicConfigs)
	if err != nil {
		return nil, err
	}
	group := requests + "-group"
	defer e.cl.deleteGroup(group)
	col, err := newCollector(e.cl.brokers, replies, p.portal != nil)
	if err != nil {
		return nil, err
	}
	defer col.close()
	e.resetUpstreamPeak()

	var proc *portalProcess
	var relay *childProcess
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		if proc != nil {
			return proc.stop(max(p.stopTimeout, 30*time.Second))
		}
		return relay.stop(max(p.stopTimeout, 30*time.Second))
	}
	defer func() { _ = stop() }()
	if p.portal != nil {
		spec := *p.portal
		spec.brokers, spec.group, spec.requests, spec.replies, spec.upstreamURL = e.cl.brokers, group, requests, replies, e.upstreamURL()
		spec.upstreamHTTP2 = e.up.portalHTTP2()
		if e.opts.Profile != "" {
			if spec.pprofAddr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		if proc, err = startPortal(ctx, e.portalBin, e.dir, p.name, spec, e.upstreamActive); err != nil {
			return nil, err
		}
		progressf(e.opts, "%s: portal pid %d ready (maxInFlight %d)", p.name, proc.cmd.Process.Pid, spec.maxInFlight)
	} else {
		cs := childSpec{Role: orDefault(p.relay, roleEchoRelay), H2C: e.opts.UpstreamH2C, Brokers: e.cl.brokers, Group: group, Requests: requests,
			Replies: replies, MaxMessageBytes: p.maxMessageBytes, URL: p.relayURL, MaxInFlight: p.relayMaxInFlight}
		if e.opts.Profile != "" {
			if cs.PprofAddr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		if relay, err = startChild(ctx, e.dir, p.name, cs); err != nil {
			return nil, err
		}
		progressf(e.opts, "%s: %s pid %d ready", p.name, cs.Role, relay.cmd.Process.Pid)
	}

	s, err := newSender(e.cl.brokers, requests, p.maxMessageBytes)
	if err != nil {
		return nil, err
	}
	progressDone := make(chan struct{})
	go e.reportProgress(p.name, s, col, progressDone)
	var prof *profiler
	switch {
	case e.opts.Profile == "":
	case proc != nil:
		prof = startProfiler(ctx, e.opts, proc.pprofAddr, p.name)
	case relay != nil:
		prof = startProfiler(ctx, e.opts, relay.pprofAddr, p.name)
	}
	self0 := selfCPU()
	up0, up0ok := e.upstreamCPU()
	loadErr := p.load(ctx, s)
	sendErr := s.close()
	submitted, order := s.jobs()
	if loadErr == nil && sendErr == nil {
		col.waitFor(ctx, order, p.wait)
	}
	loadgenCPU := selfCPU() - self0
	up1, up1ok := e.upstreamCPU()
	if prof != nil {
		prof.end()
	}
	if loadErr == nil && sendErr == nil && col.count() >= len(order) {
		// Late duplicates show up within moments of the last answer.
		time.Sleep(time.Second)
	}
	close(progressDone)
	var profErr error
	if prof != nil {
		profErr = prof.finish(ctx)
	}

	r := &phaseResult{name: p.name, submitted: submitted, order: order, jobs: len(order), loadgenCPU: loadgenCPU}
	if up0ok && up1ok {
		r.upstreamCPU = up1 - up0
	}
	if proc != nil {
		if text, err := proc.metrics(ctx); err == nil {
			r.retries, _ = metricValue(text, "kafkasend_portal_upstream_retries_total")
			r.backpressure, _ = metricValue(text, "kafkasend_portal_backpressure_seconds_total")
		}
	}
	r.upstreamPeak = e.upstreamPeak()
	stopErr := stop()
	col.close()
	r.arrivals, r.duplicates, r.readErrs = col.results()
	if relay != nil {
		r.relayCPU = relay.cpu
	}
	if proc != nil {
		r.cpu, r.peakRSS = proc.cpu, proc.peakRSS
		r.samples, r.peakPortalInFlight = proc.snapshot()
		r.procStarted = proc.started
		if len(r.samples) > 0 {
			r.baseRSS = r.samples[0].RSS
		}
	}
	for _, id := range order {
		a, ok := r.arrivals[id]
		if !ok {
			r.lost++
			continue
		}
		r.answered++
		if a.Kind != wire.ErrorNone || (p.portal != nil && (a.Status != 200 || a.Bytes != p.bodyBytes)) {
			r.failed++
		}
		r.end = later(r.end, a.At)
		if t := submitted[id]; r.start.IsZero() || t.Before(r.start) {
			r.start = t
		}
	}
	progressf(e.opts, "%s: %d jobs, %d answered, %d lost, %d duplicates, %d errors in %v",
		p.name, r.jobs, r.answered, r.lost, r.duplicates, r.failed, r.elapsed().Round(time.Millisecond))
	switch {
	case loadErr != nil:
		return r, fmt.Errorf("%s: submitting jobs: %w", p.name, loadErr)
	case sendErr != nil:
		return r, fmt.Errorf("%s: %w", p.name, sendErr)
	case stopErr != nil:
		return r, fmt.Errorf("%s: %w", p.name, stopErr)
	case profErr != nil:
		return r, fmt.Errorf("%s: profiling: %w", p.name, profErr)
	}
	return r, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// reportProgress prints a line every 5 s until done closes.
func (e *env) reportProgress(name string, s *sender, col *collector, done chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.mu.Lock()
			n := len(s.order)
			s.mu.Unlock()
			progressf(e.opts, "%s: %d submitted, %d answered, upstream busy with %d", name, n, col.count(), e.upstreamActive())
		}
	}
}
