package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"

	"kafkasend.io/kafkasend/pkg/client"
)

// Options of a demo run.
type Options struct {
	// SlowJobs and FastJobs are the workload of each phase (default 10, 100).
	SlowJobs, FastJobs int
	// SlowDelay and FastDelay are the upstream's latencies (default 2s, 50ms).
	SlowDelay, FastDelay time.Duration
	// Concurrency is maxInFlight of the async phase (default: the portal's
	// default, 100).
	Concurrency int
	// Live makes progress lines update in place (for a terminal); otherwise
	// one line per phase is printed when it ends.
	Live bool
	// Log is the portal's logger (default: discard).
	Log logr.Logger
}

func (o *Options) defaults() {
	if o.SlowJobs == 0 && o.FastJobs == 0 {
		o.SlowJobs, o.FastJobs = 10, 100
	}
	if o.SlowDelay == 0 {
		o.SlowDelay = 2 * time.Second
	}
	if o.FastDelay == 0 {
		o.FastDelay = 50 * time.Millisecond
	}
	if o.Concurrency == 0 {
		o.Concurrency = 100
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
}

// Phase is the outcome of one workload run.
type Phase struct {
	Name        string
	MaxInFlight int
	Fast, Slow  []time.Duration // latencies of successful jobs, sorted
	Failed      int
	Wall        time.Duration
	Peak        int64
}

// Throughput is successful jobs per second of wall time.
func (p Phase) Throughput() float64 {
	if p.Wall <= 0 {
		return 0
	}
	return float64(len(p.Fast)+len(p.Slow)) / p.Wall.Seconds()
}

// Report is the outcome of a demo run.
type Report struct {
	Sync, Async Phase
	// TokenRequests is how many OAuth2 tokens the portals fetched in all.
	TokenRequests int64
}

// FastP95SpeedUp is the sync phase's fast-job p95 over the async one's.
func (r Report) FastP95SpeedUp() float64 {
	a := Percentile(r.Async.Fast, 95)
	if a <= 0 {
		return 0
	}
	return float64(Percentile(r.Sync.Fast, 95)) / float64(a)
}

// Percentile returns the p-th percentile (nearest rank) of sorted values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Run starts the embedded pipeline, runs the workload against a portal with
// maxInFlight=1 (the old synchronous design) and then with opts.Concurrency,
// writes progress and a comparison table to w, and returns the figures. It
// fails when any job fails.
func Run(ctx context.Context, w io.Writer, opts Options) (Report, error) {
	opts.defaults()
	var rep Report
	env, err := StartEnv(EnvOptions{Slow: opts.SlowDelay, Fast: opts.FastDelay, RequestTopics: []string{"requests-sync", "requests-async"}})
	if err != nil {
		return rep, err
	}
	defer env.Close()
	fmt.Fprintf(w, "kafkasend demo: embedded Kafka broker at %s, upstream %s (OAuth2 client credentials)\n", env.Brokers[0], env.UpstreamURL)
	fmt.Fprintf(w, "workload per phase: %d slow jobs (%s) among %d fast jobs (%s), all sent at once\n\n",
		opts.SlowJobs, opts.SlowDelay, opts.FastJobs, opts.FastDelay)

	phases := []struct {
		name, topic string
		inFlight    int
		out         *Phase
	}{
		{"sync", "requests-sync", 1, &rep.Sync},
		{"async", "requests-async", opts.Concurrency, &rep.Async},
	}
	for _, ph := range phases {
		if err := env.StartPortal(env.PortalConfig(ph.topic, ph.inFlight), opts.Log); err != nil {
			return rep, fmt.Errorf("%s phase: %w", ph.name, err)
		}
		p, err := runPhase(ctx, w, env, ph.name, ph.topic, ph.inFlight, opts)
		*ph.out = p
		if stopErr := env.StopPortal(); err == nil && stopErr != nil {
			err = fmt.Errorf("%s phase: %w", ph.name, stopErr)
		}
		if err != nil {
			return rep, err
		}
	}
	rep.TokenRequests = env.TokenRequests()
	printTable(w, rep)
	if refused := env.Refused(); refused > 0 {
		return rep, fmt.Errorf("the upstream refused %d calls for a bad token", refused)
	}
	return rep, nil
}

type jobResult struct {
	slow    bool
	latency time.Duration
	err     error
}

func runPhase(ctx context.Context, w io.Writer, env *Env, name, topic string, inFlight int, opts Options) (Phase, error) {
	ph := Phase{Name: name, MaxInFlight: inFlight}
	total := opts.SlowJobs + opts.FastJobs
	// Generous: the synchronous phase runs every job one after the other.
	budget := time.Duration(opts.SlowJobs)*opts.SlowDelay + time.Duration(opts.FastJobs)*opts.FastDelay*3 + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	c, err := client.New(client.Config{
		Brokers: env.Brokers, RequestsTopic: topic, ReplyTopic: ReplyTopic, ReplyPartition: 0,
		ClientID: "kafkasend-demo", Timeout: budget,
	})
	if err != nil {
		return ph, err
	}
	defer c.Close()

	env.ResetPeak()
	var done atomic.Int64
	results := make([]jobResult, total)
	stopProgress := progress(w, name, inFlight, total, &done, env, opts.Live)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range total {
		slow := isSlow(i, opts.SlowJobs, total)
		path := fmt.Sprintf("/fast/%d", i)
		if slow {
			path = fmt.Sprintf("/slow/%d", i)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "kafkasend:"+path, nil)
		if err != nil {
			stopProgress(time.Since(start))
			return ph, fmt.Errorf("building job %d: %w", i, err)
		}
		sent := time.Now()
		id, err := c.Submit(ctx, req)
		if err != nil {
			stopProgress(time.Since(start))
			return ph, fmt.Errorf("sending job %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			resp, err := c.Await(ctx, id)
			r := jobResult{slow: slow, latency: time.Since(sent), err: err}
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					r.err = fmt.Errorf("status %s", resp.Status)
				}
			}
			results[i] = r
		}()
	}
	wg.Wait()
	ph.Wall = time.Since(start)
	ph.Peak = env.Peak()
	stopProgress(ph.Wall)
	var errs []error
	for _, r := range results {
		switch {
		case r.err != nil:
			ph.Failed++
			if len(errs) < 3 {
				errs = append(errs, r.err)
			}
		case r.slow:
			ph.Slow = append(ph.Slow, r.latency)
		default:
			ph.Fast = append(ph.Fast, r.latency)
		}
	}
	slices.Sort(ph.Fast)
	slices.Sort(ph.Slow)
	if ph.Failed > 0 {
		return ph, fmt.Errorf("%s phase: %d of %d jobs failed, e.g.: %w", name, ph.Failed, total, errors.Join(errs...))
	}
	return ph, nil
}

// isSlow spreads the slow jobs evenly over the sequence, the first one first.
func isSlow(i, slow, total int) bool {
	if slow == 0 {
		return false
	}
	step := total / slow
	return i%step == 0 && i/step < slow
}

// progress reports done/total and the upstream calls in flight until the
// returned function is called.
func progress(w io.Writer, name string, inFlight, total int, done *atomic.Int64, env *Env, live bool) func(time.Duration) {
	label := fmt.Sprintf("%-24s", fmt.Sprintf("%s (maxInFlight=%d)", name, inFlight))
	line := func(elapsed time.Duration) string {
		return fmt.Sprintf("%s  %3d/%d done  %3d in flight  %5.1fs", label, done.Load(), total, env.InFlight(), elapsed.Seconds())
	}
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					fmt.Fprintf(w, "\r%s", line(time.Since(start)))
				}
			}
		}()
	}
	return func(elapsed time.Duration) {
		close(stop)
		wg.Wait()
		prefix := ""
		if live {
			prefix = "\r"
		}
		fmt.Fprintf(w, "%s%s  peak %d in flight\n", prefix, line(elapsed), env.Peak())
	}
}

func printTable(w io.Writer, r Report) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tsync (maxInFlight=%d)\tasync (maxInFlight=%d)\t\n", r.Sync.MaxInFlight, r.Async.MaxInFlight)
	row := func(label string, f func(Phase) string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", label, f(r.Sync), f(r.Async))
	}
	for _, kind := range []string{"fast", "slow"} {
		for _, p := range []float64{50, 95, 99} {
			row(fmt.Sprintf("%s jobs p%.0f", kind, p), func(ph Phase) string {
				lat := ph.Fast
				if kind == "slow" {
					lat = ph.Slow
				}
				return formatDuration(Percentile(lat, p))
			})
		}
	}
	row("throughput", func(ph Phase) string { return fmt.Sprintf("%.1f jobs/s", ph.Throughput()) })
	row("wall time", func(ph Phase) string { return formatDuration(ph.Wall) })
	row("peak in flight", func(ph Phase) string { return fmt.Sprint(ph.Peak) })
	row("failed jobs", func(ph Phase) string { return fmt.Sprint(ph.Failed) })
	_ = tw.Flush()
	fmt.Fprintf(w, "\nfast-job p95 speed-up: %.0fx (%s -> %s); OAuth2 tokens fetched: %d\n",
		r.FastP95SpeedUp(), formatDuration(Percentile(r.Sync.Fast, 95)), formatDuration(Percentile(r.Async.Fast, 95)), r.TokenRequests)
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
