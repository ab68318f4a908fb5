package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// profileSlice is the length of each CPU profile fetched during a phase;
// the slices are merged into one profile, so that it covers the phase
// whatever its length, overrunning its end by at most one slice.
const profileSlice = time.Second

// profiler fetches CPU profiles of a process (a portal or a relay) from
// the first submission until the last answer of a phase, and an allocation
// profile at its end (--profile DIR).
type profiler struct {
	o       Options
	addr    string
	name    string
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}
	slices  []*profile.Profile
	err     error
}

// startProfiler fetches /debug/pprof/profile?seconds=1 from the process at
// addr, slice after slice, until finish.
func startProfiler(ctx context.Context, o Options, addr, name string) *profiler {
	p := &profiler{o: o, addr: addr, name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(profileSlice.Seconds()))
		for {
			prof, err := fetchCPUSlice(ctx, url)
			if err != nil {
				p.err = err
				return
			}
			p.slices = append(p.slices, prof)
			select {
			case <-p.stop:
				return
			default:
			}
		}
	}()
	return p
}

func fetchCPUSlice(ctx context.Context, url string) (*profile.Profile, error) {
	body, err := fetch(ctx, url, profileSlice+30*time.Second)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	prof, err := profile.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("reading the profile from %s: %w", url, err)
	}
	return prof, nil
}

// end asks for no further CPU profile slices: the phase's answers are in.
func (p *profiler) end() { p.stopped.Do(func() { close(p.stop) }) }

func (p *profiler) file(kind string) string {
	return filepath.Join(p.o.Profile, p.name+"."+kind+".pb.gz")
}

// finish ends the CPU profile after its current slice and writes the
// merged slices to DIR/NAME.cpu.pb.gz, then fetches /debug/pprof/allocs
// (allocations since the process started, and the heap in use now) into
// DIR/NAME.allocs.pb.gz.
func (p *profiler) finish(ctx context.Context) error {
	p.end()
	<-p.done
	err := p.err
	if err == nil {
		err = p.writeCPU()
	}
	body, aerr := fetch(ctx, "http://"+p.addr+"/debug/pprof/allocs", 60*time.Second)
	if aerr == nil {
		aerr = writeFile(p.file("allocs"), body)
	}
	if aerr != nil {
		return errors.Join(err, aerr)
	}
	progressf(p.o, "%s: wrote %s", p.name, p.file("allocs"))
	return err
}

func (p *profiler) writeCPU() error {
	merged, err := profile.Merge(p.slices)
	if err != nil {
		return fmt.Errorf("merging %d CPU profiles: %w", len(p.slices), err)
	}
	f, err := os.Create(p.file("cpu"))
	if err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if err := merged.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing the profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	progressf(p.o, "%s: wrote %s (%d s of CPU profile)", p.name, p.file("cpu"), len(p.slices))
	return nil
}

// fetch GETs url and returns the body of a 200 answer.
func fetch(ctx context.Context, url string, timeout time.Duration) (io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetching %s (is the process serving --pprof-bind-address?): %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetching %s: %s: %s", url, resp.Status, b)
	}
	return cancelOnClose{resp.Body, cancel}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// writeFile copies body into file and closes body.
func writeFile(file string, body io.ReadCloser) error {
	defer body.Close()
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	return nil
}
