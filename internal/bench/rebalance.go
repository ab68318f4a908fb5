package bench

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"kafkasend.io/kafkasend/pkg/wire"
)

// Rebalance variants.
const (
	RebalanceTimeline = "timeline" // workers 1→2→3→2→1, one change a step
	RebalanceKill     = "kill"     // the timeline with a kill -9 of the worker holding handed-over jobs
	RebalanceRollout  = "rollout"  // three workers restarted one by one (a rollout)
)

// RebalanceResult is the rebalance scenario's result.
type RebalanceResult struct {
	Common
	Variant    string  `json:"variant"`
	Partitions int     `json:"partitions"`
	SlowJobs   int     `json:"slow_jobs"`
	SlowMs     int64   `json:"slow_ms"`
	FastJobs   int     `json:"fast_jobs"`
	FastRate   float64 `json:"fast_rate"`
	StepS      float64 `json:"step_s"`
	// Events are the membership changes, seconds after the first job.
	Events []string `json:"events"`
	// SlowExecutionsMax is the most upstream executions of one slow job;
	// SlowReexecuted the slow jobs executed more than once.
	SlowExecutionsMax int `json:"slow_executions_max"`
	SlowReexecuted    int `json:"slow_reexecuted"`
	// SlowCancelled counts slow-job executions the upstream saw cancelled.
	SlowCancelled int `json:"slow_cancelled"`
	// FastReexecuted counts fast jobs executed more than once.
	FastReexecuted int `json:"fast_reexecuted"`
	// SlowAnswerMaxS is the longest submission-to-answer time of a slow job.
	SlowAnswerMaxS float64 `json:"slow_answer_max_s"`
	// Fast-job p95 of the quiet phase (before the first change) and of the
	// worst 5-second bucket of send time; the longest time without any
	// answer while fast jobs were being sent.
	FastP95QuietMs       float64 `json:"fast_p95_quiet_ms"`
	FastP95WorstBucketMs float64 `json:"fast_p95_worst_bucket_ms"`
	LongestGapMs         float64 `json:"longest_gap_ms"`
	// Buckets: "start_s p95_ms n" per 5-second bucket of send time.
	Buckets []string `json:"buckets"`
	// Kill variant: slow jobs of the killed worker executed again, and the
	// longest time from the kill to such a re-execution.
	ReexecutedAfterKill   *int     `json:"reexecuted_after_kill,omitempty"`
	ReexecutionDelayMaxMs *float64 `json:"reexecution_delay_max_ms,omitempty"`
}

// workerSet runs portal processes of one group.
type workerSet struct {
	e     *env
	spec  portalSpec
	mu    sync.Mutex
	live  []*portalProcess
	gone  []*portalProcess
	n     int
	start time.Time
	log   []string
}

func (w *workerSet) event(format string, a ...any) {
	msg := fmt.Sprintf("%5.1fs ", time.Since(w.start).Seconds()) + fmt.Sprintf(format, a...)
	w.mu.Lock()
	w.log = append(w.log, msg)
	w.mu.Unlock()
	progressf(w.e.opts, "rebalance: %s", msg)
}

func (w *workerSet) add(ctx context.Context) (*portalProcess, error) {
	w.mu.Lock()
	w.n++
	name := fmt.Sprintf("rebalance-worker-%d", w.n)
	w.mu.Unlock()
	p, err := startPortal(ctx, w.e.portalBin, w.e.dir, name, w.spec, w.e.up.active.Load)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.live = append(w.live, p)
	n := len(w.live)
	w.mu.Unlock()
	w.event("worker %d joined (pid %d): %d workers", w.n, p.cmd.Process.Pid, n)
	return p, nil
}

// remove sends SIGTERM to the oldest live worker (or the given one) and
// returns at once; the process finishes its running jobs on its own.
func (w *workerSet) remove(p *portalProcess, kill bool) {
	w.mu.Lock()
	if p == nil && len(w.live) > 0 {
		p = w.live[0]
	}
	i := slices.Index(w.live, p)
	if i < 0 {
		w.mu.Unlock()
		return
	}
	w.live = slices.Delete(w.live, i, i+1)
	w.gone = append(w.gone, p)
	n := len(w.live)
	w.mu.Unlock()
	if kill {
		p.kill()
		w.event("worker pid %d killed (-9): %d workers", p.cmd.Process.Pid, n)
		return
	}
	if p.stopSampling != nil {
		p.stopSampling()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	w.event("worker pid %d sent SIGTERM: %d workers", p.cmd.Process.Pid, n)
}

func (w *workerSet) stopAll(timeout time.Duration) {
	w.mu.Lock()
	all := append(append([]*portalProcess(nil), w.live...), w.gone...)
	w.live = nil
	w.mu.Unlock()
	for _, p := range all {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.stop(timeout)
	}
}

func runRebalance(ctx context.Context, e *env, c Common) (Outcome, error) {
	o := e.opts
	variant := orDefaultString(o.Variant, RebalanceTimeline)
	step := orDefault(o.Step, 30*time.Second)
	slowDelay := orDefault(o.SlowDelay, 90*time.Second)
	nSlow := orDefault(o.Slow, 30)
	rateFast := orDefault(o.Rate, 20.0)
	fastDelay := orDefault(o.FastDelay, 50*time.Millisecond)
	parts := int32(o.Partitions)

	requests, err := e.cl.createTopic("rebalance-requests", parts, nil)
	if err != nil {
		return Outcome{}, err
	}
	replies, err := e.cl.createTopic("rebalance-replies", parts, nil)
	if err != nil {
		return Outcome{}, err
	}
	group := requests + "-group"
	defer e.cl.deleteGroup(group)
	col, err := newCollector(e.cl.brokers, replies, true)
	if err != nil {
		return Outcome{}, err
	}
	defer col.close()
	e.up.resetExecutions()

	ws := &workerSet{e: e, spec: portalSpec{
		brokers: e.cl.brokers, group: group, requests: requests, replies: replies, upstreamURL: e.up.url,
		upstreamHTTP2: e.up.portalHTTP2(), maxInFlight: o.MaxInFlight,
	}}
	defer ws.stopAll(slowDelay + 30*time.Second)
	ws.start = time.Now()
	first, err := ws.add(ctx)
	if err != nil {
		return Outcome{}, err
	}
	if variant == RebalanceRollout {
		for range 2 {
			if _, err := ws.add(ctx); err != nil {
				return Outcome{}, err
			}
		}
	}

	s, err := newSender(e.cl.brokers, requests, defaultMaxMessageBytes)
	if err != nil {
		return Outcome{}, err
	}
	// The first change comes one step after the fast stream starts; the
	// slow jobs go first, so that they are in flight across every change.
	var changes []func()
	var killAt time.Time
	switch variant {
	case RebalanceRollout:
		for i := range 3 {
			changes = append(changes, func() {
				ws.mu.Lock()
				old := ws.live[0]
				ws.mu.Unlock()
				if _, err := ws.add(ctx); err != nil {
					ws.event("replacement %d failed: %v", i, err)
					return
				}
				ws.remove(old, false)
			})
		}
	default:
		changes = []func(){
			func() { _, _ = ws.add(ctx) },
			func() { _, _ = ws.add(ctx) },
			func() { ws.remove(nil, false) },
			func() { ws.remove(nil, false) },
		}
		if variant == RebalanceKill {
			// After the first join the first worker holds handed-over jobs:
			// kill it half a step later.
			changes = []func(){
				func() { _, _ = ws.add(ctx) },
				func() { killAt = time.Now(); ws.remove(first, true) },
				func() { _, _ = ws.add(ctx) },
				func() { ws.remove(nil, false) },
			}
		}
	}
	stepOf := func(i int) time.Duration {
		if variant == RebalanceKill && i == 1 {
			return step + step/2
		}
		if variant == RebalanceKill && i > 1 {
			return time.Duration(i) * step
		}
		return time.Duration(i+1) * step
	}

	slowIDs := map[string]bool{}
	sendStart := time.Now()
	ws.start = sendStart
	for range nSlow {
		r := newJob(slowDelay, body(256))
		slowIDs[r.ID] = true
		if err := s.send(ctx, r); err != nil {
			return Outcome{}, err
		}
	}
	fastEnd := time.Duration(len(changes)+1) * step
	nFast := int(rateFast * fastEnd.Seconds())
	loadDone := make(chan error, 1)
	go func() {
		loadDone <- submit(ctx, s, limiter(rateFast), nFast, func(int) *wire.Request { return newJob(fastDelay, body(256)) })
	}()
	progressDone := make(chan struct{})
	go e.reportProgress("rebalance", s, col, progressDone)
	for i, change := range changes {
		at := sendStart.Add(stepOf(i))
		select {
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		change()
	}
	loadErr := <-loadDone
	sendErr := s.close()
	submitted, order := s.jobs()
	if loadErr == nil && sendErr == nil {
		col.waitFor(ctx, order, slowDelay+2*time.Minute)
		time.Sleep(2 * time.Second) // late duplicates
	}
	close(progressDone)
	ws.stopAll(slowDelay + 30*time.Second)
	col.close()
	arrivals, dups, readErrs := col.results()

	res := RebalanceResult{
		Common: c, Variant: variant, Partitions: int(parts), SlowJobs: nSlow, SlowMs: slowDelay.Milliseconds(),
		FastJobs: nFast, FastRate: rateFast, StepS: step.Seconds(), Events: ws.log,
	}
	r := &phaseResult{name: "rebalance", submitted: submitted, order: order, jobs: len(order), arrivals: arrivals, duplicates: dups, readErrs: readErrs}
	for _, id := range order {
		a, ok := arrivals[id]
		if !ok {
			r.lost++
			continue
		}
		r.answered++
		if a.Kind != wire.ErrorNone || a.Status != 200 {
			r.failed++
		}
		if slowIDs[id] {
			res.SlowAnswerMaxS = max(res.SlowAnswerMaxS, round2(a.At.Sub(submitted[id]).Seconds()))
		}
	}
	res.add(r)

	execs, cancels, starts := e.up.executions()
	for id := range slowIDs {
		n := execs[id]
		res.SlowExecutionsMax = max(res.SlowExecutionsMax, n)
		if n > 1 {
			res.SlowReexecuted++
		}
		res.SlowCancelled += cancels[id]
	}
	for _, id := range order {
		if !slowIDs[id] && execs[id] > 1 {
			res.FastReexecuted++
		}
	}
	if variant == RebalanceKill && !killAt.IsZero() {
		n, worst := 0, 0.0
		for id := range slowIDs {
			for _, t := range starts[id] {
				if t.After(killAt) {
					n++
					worst = max(worst, float64(t.Sub(killAt).Milliseconds()))
				}
			}
		}
		res.ReexecutedAfterKill, res.ReexecutionDelayMaxMs = &n, &worst
	}

	// Fast-job latency by 5-second bucket of send time.
	type pt struct {
		sent time.Duration
		lat  time.Duration
	}
	var fast []pt
	var answers []time.Time
	for _, id := range order {
		a, ok := arrivals[id]
		if !ok {
			continue
		}
		answers = append(answers, a.At)
		if !slowIDs[id] {
			fast = append(fast, pt{submitted[id].Sub(sendStart), a.At.Sub(submitted[id])})
		}
	}
	const bucket = 5 * time.Second
	byBucket := map[int][]time.Duration{}
	var quiet []time.Duration
	firstChange := stepOf(0)
	for _, f := range fast {
		byBucket[int(f.sent/bucket)] = append(byBucket[int(f.sent/bucket)], f.lat)
		if f.sent >= bucket && f.sent < firstChange {
			quiet = append(quiet, f.lat)
		}
	}
	keys := make([]int, 0, len(byBucket))
	for k := range byBucket {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		p95 := ms(Percentile(byBucket[k], 95))
		res.FastP95WorstBucketMs = max(res.FastP95WorstBucketMs, p95)
		res.Buckets = append(res.Buckets, fmt.Sprintf("%3ds %8.1fms %4d", k*int(bucket/time.Second), p95, len(byBucket[k])))
	}
	res.FastP95QuietMs = ms(Percentile(quiet, 95))
	slices.SortFunc(answers, func(a, b time.Time) int { return a.Compare(b) })
	streamEnd := sendStart.Add(fastEnd)
	for i := 1; i < len(answers); i++ {
		if answers[i].After(streamEnd) {
			break
		}
		res.LongestGapMs = max(res.LongestGapMs, float64(answers[i].Sub(answers[i-1]).Milliseconds()))
	}
	progressf(o, "rebalance (%s): slow executions max %d, re-executed %d, cancelled %d; fast p95 quiet %.1f ms, worst bucket %.1f ms; longest gap %.0f ms",
		variant, res.SlowExecutionsMax, res.SlowReexecuted, res.SlowCancelled, res.FastP95QuietMs, res.FastP95WorstBucketMs, res.LongestGapMs)
	progressf(o, "rebalance buckets (send time, fast p95, jobs):\n  %s", strings.Join(res.Buckets, "\n  "))
	switch {
	case loadErr != nil:
		return Outcome{Value: res}, fmt.Errorf("rebalance: submitting jobs: %w", loadErr)
	case sendErr != nil:
		return Outcome{Value: res}, fmt.Errorf("rebalance: %w", sendErr)
	}
	return Outcome{Value: res}, nil
}

func orDefaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
