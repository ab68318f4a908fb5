package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Bounds of a --profile CPU profile's length.
const (
	// profileWarmUp is how long answers are counted to fit the profile,
	// from the first answer on.
	profileWarmUp = time.Second
	// profileFirstAnswer bounds the wait for the first answer.
	profileFirstAnswer = 10 * time.Second
	profileMinSeconds  = 1
	profileMaxSeconds  = 300
	// profileFallbackSeconds is used when no job was answered within
	// profileFirstAnswer or in the warm-up (long upstream calls).
	profileFallbackSeconds = 10
)

// profiler fetches a CPU profile of a portal process during a phase's load
// and an allocation profile at its end (--profile DIR).
type profiler struct {
	o       Options
	addr    string
	name    string
	done    chan struct{}
	seconds int
	err     error
}

// profileSeconds fits a CPU profile to a phase: 80 % of the time the
// remaining jobs are expected to take at the answer rate of the warm-up (n
// answers in warmUp), so that the profile covers the steady state and ends
// before the phase does.
func profileSeconds(remaining, n int, warmUp time.Duration) int {
	if remaining <= 0 {
		return profileMinSeconds
	}
	if n <= 0 || warmUp <= 0 {
		return profileFallbackSeconds
	}
	rest := float64(remaining) / (float64(n) / warmUp.Seconds())
	return min(max(int(0.8*rest), profileMinSeconds), profileMaxSeconds)
}

// fitProfile waits for the first answer (up to profileFirstAnswer), counts
// the answers of the warm-up after it and returns the profile's length.
func fitProfile(ctx context.Context, jobs int, answered func() int) (int, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	first := time.After(profileFirstAnswer)
	for answered() == 0 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-first:
			return profileFallbackSeconds, nil
		case <-tick.C:
		}
	}
	t0, a0 := time.Now(), answered()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(profileWarmUp):
	}
	a1 := answered()
	return profileSeconds(jobs-a1, a1-a0, time.Since(t0)), nil
}

// startProfiler waits for the first answer and the warm-up, then fetches
// /debug/pprof/profile?seconds=N from the process at addr (a portal or a
// relay) into DIR/NAME.cpu.pb.gz. jobs is the phase's job count; answered
// counts the answers so far. A phase shorter than the warm-up gets a
// profile of profileMinSeconds, mostly idle.
func startProfiler(ctx context.Context, o Options, addr, name string, jobs int, answered func() int) *profiler {
	p := &profiler{o: o, addr: addr, name: name, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if p.seconds, p.err = fitProfile(ctx, jobs, answered); p.err != nil {
			return
		}
		progressf(o, "%s: CPU profile of %d s", name, p.seconds)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, p.seconds)
		p.err = fetchProfile(ctx, url, p.file("cpu"), time.Duration(p.seconds)*time.Second+30*time.Second)
	}()
	return p
}

func (p *profiler) file(kind string) string {
	return filepath.Join(p.o.Profile, p.name+"."+kind+".pb.gz")
}

// finish waits for the CPU profile and fetches the allocation profile
// (/debug/pprof/allocs: allocations since the process started, and the
// heap in use now).
func (p *profiler) finish(ctx context.Context) error {
	<-p.done
	err := p.err
	if err == nil {
		progressf(p.o, "%s: wrote %s", p.name, p.file("cpu"))
	}
	if aerr := fetchProfile(ctx, "http://"+p.addr+"/debug/pprof/allocs", p.file("allocs"), 60*time.Second); aerr != nil {
		return errors.Join(err, aerr)
	}
	progressf(p.o, "%s: wrote %s", p.name, p.file("allocs"))
	return err
}

// fetchProfile downloads one profile into file.
func fetchProfile(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s (is the portal started with --pprof-bind-address?): %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetching %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	return nil
}
