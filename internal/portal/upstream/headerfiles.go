package upstream

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http/httpguts"
)

// DefaultHeaderRecheckInterval is how often upstream.headerFiles are re-read.
const DefaultHeaderRecheckInterval = 2 * time.Second

// maxHeaderFileBytes bounds what is read from one header file.
const maxHeaderFileBytes = 16 << 10

// fileHeaders are the upstream.headerFiles: header values read from mounted
// Secret files (API keys), re-read at most once per interval, on a call, by
// whichever call comes first (the others go on with the current values).
// Values are never logged. A file that cannot be read or holds an invalid
// value on a re-read keeps the last good value, and the failure is logged
// by file path once until it is fixed.
type fileHeaders struct {
	paths    map[string]string // canonical header name -> file path
	names    []string          // sorted, for stable iteration
	interval time.Duration
	log      logr.Logger

	cur atomic.Pointer[http.Header]

	lastCheck atomic.Int64    // Unix nanoseconds of the last read
	mu        sync.Mutex      // held by the one re-read at a time
	failing   map[string]bool // paths whose failure was logged (under mu)
}

// newFileHeaders validates the names like upstream.headers and reads every
// file once; a missing or invalid file is a configuration error.
func newFileHeaders(files map[string]string, oauthOn bool, interval time.Duration, log logr.Logger) (*fileHeaders, error) {
	if len(files) == 0 {
		return nil, nil
	}
	if interval == 0 {
		interval = DefaultHeaderRecheckInterval
	}
	f := &fileHeaders{paths: map[string]string{}, interval: interval, log: log, failing: map[string]bool{}}
	for k, p := range files {
		if err := checkConfiguredHeaderName("upstream.headerFiles", k, oauthOn); err != nil {
			return nil, err
		}
		ck := http.CanonicalHeaderKey(k)
		if _, dup := f.paths[ck]; dup {
			return nil, fmt.Errorf("upstream.headerFiles: %s appears twice", ck)
		}
		if p == "" {
			return nil, fmt.Errorf("upstream.headerFiles: %s has no file path", ck)
		}
		f.paths[ck] = p
		f.names = append(f.names, ck)
	}
	sort.Strings(f.names)
	h := http.Header{}
	for _, name := range f.names {
		v, err := readHeaderFile(f.paths[name])
		if err != nil {
			return nil, fmt.Errorf("upstream.headerFiles: %s: %w", name, err)
		}
		h[name] = []string{v}
	}
	f.cur.Store(&h)
	f.lastCheck.Store(time.Now().UnixNano())
	return f, nil
}

// current returns the header values to send, re-reading the files when the
// interval has passed (a negative interval: on every call). The returned
// header must not be modified.
func (f *fileHeaders) current() http.Header {
	if f.due() && f.mu.TryLock() {
		if f.due() {
			f.reload()
		}
		f.mu.Unlock()
	}
	return *f.cur.Load()
}

func (f *fileHeaders) due() bool {
	return f.interval < 0 || time.Since(time.Unix(0, f.lastCheck.Load())) >= f.interval
}

// reload re-reads every file; f.mu is held.
func (f *fileHeaders) reload() {
	f.lastCheck.Store(time.Now().UnixNano())
	old := *f.cur.Load()
	next := http.Header{}
	changed := false
	for _, name := range f.names {
		p := f.paths[name]
		v, err := readHeaderFile(p)
		if err != nil {
			if !f.failing[p] {
				f.failing[p] = true
				f.log.Error(err, "Re-reading an upstream header file failed; keeping its last value", "header", name, "file", p)
			}
			next[name] = old[name]
			continue
		}
		if f.failing[p] {
			delete(f.failing, p)
			f.log.Info("Upstream header file readable again", "header", name, "file", p)
		}
		if len(old[name]) != 1 || old[name][0] != v {
			changed = true
			f.log.Info("Upstream header value changed", "header", name, "file", p)
		}
		next[name] = []string{v}
	}
	if changed {
		f.cur.Store(&next)
	}
}

// readHeaderFile reads one value: the file's content without trailing
// newlines, which must be a valid, non-empty header value. Errors name the
// file, never its content.
func readHeaderFile(p string) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	defer func() { _ = fh.Close() }()
	b, err := io.ReadAll(io.LimitReader(fh, maxHeaderFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > maxHeaderFileBytes {
		return "", fmt.Errorf("%s is over %d bytes", p, maxHeaderFileBytes)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return "", fmt.Errorf("%s is empty", p)
	}
	if !httpguts.ValidHeaderFieldValue(string(b)) {
		return "", fmt.Errorf("%s does not hold a valid header value (control characters)", p)
	}
	return string(b), nil
}
