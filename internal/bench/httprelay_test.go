package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The HTTP relay commits a record's offset only once every record before it
// in the partition is answered and acknowledged, whatever order they finish in.
func TestOffsetTrackerCommitsInOrder(t *testing.T) {
	var tr offsetTracker
	// Offsets with a gap (a compacted or transactional partition).
	seqs := map[int64]uint64{}
	for _, off := range []int64{10, 11, 12, 14, 15} {
		seqs[off] = tr.add(off)
	}
	steps := []struct {
		finish int64
		next   int64 // 0: no commit yet
	}{
		{12, 0},  // 10 and 11 still running
		{11, 0},  // 10 still running
		{10, 13}, // 10, 11, 12 done: commit up to 12
		{15, 0},  // 14 running
		{14, 16},
	}
	for _, s := range steps {
		next, ok := tr.done(seqs[s.finish])
		switch {
		case s.next == 0 && ok:
			t.Errorf("after %d finished: committed %d, want nothing while an earlier record runs", s.finish, next)
		case s.next != 0 && (!ok || next != s.next):
			t.Errorf("after %d finished: commit %d (%v), want %d", s.finish, next, ok, s.next)
		}
	}
	if next, ok := tr.done(seqs[14]); ok {
		t.Errorf("settling a record twice moved the commit to %d", next)
	}
	// New records after a drained window.
	s := tr.add(20)
	if next, ok := tr.done(s); !ok || next != 21 {
		t.Errorf("commit %d (%v), want 21", next, ok)
	}
}

// A --portal-bin of another make gets only the flags of the portal
// contract unless --profile asked for our portal's profiles.
func TestPortalArgsOnlyProfileAddsPprof(t *testing.T) {
	plain := portalArgs("c.yaml", "127.0.0.1:1", portalSpec{})
	want := []string{"--config", "c.yaml", "--health-bind-address", "127.0.0.1:1", "--metrics-bind-address", "127.0.0.1:1", "--log-level", "info"}
	if !slices.Equal(plain, want) {
		t.Errorf("without --profile: %q, want %q", plain, want)
	}
	prof := portalArgs("c.yaml", "127.0.0.1:1", portalSpec{pprofAddr: "127.0.0.1:2"})
	if !slices.Equal(prof, append(want, "--pprof-bind-address", "127.0.0.1:2")) {
		t.Errorf("with --profile: %q", prof)
	}
}

func TestParseArgsProfile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "profiles")
	var out, errs strings.Builder
	o, code := parseArgs([]string{"--scenario", "throughput", "--profile", dir}, &out, &errs)
	if code != -1 || o.Profile != dir {
		t.Fatalf("code %d, profile %q; stderr:\n%s", code, o.Profile, errs.String())
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("--profile did not create %s: %v", dir, err)
	}
	errs.Reset()
	o, code = parseArgs([]string{"--scenario", "rebalance", "--profile", dir}, &out, &errs)
	if code != -1 || o.Profile != "" || !strings.Contains(errs.String(), "--profile ignored") {
		t.Errorf("rebalance with --profile: code %d, profile %q, stderr %q; want it ignored with a note", code, o.Profile, errs.String())
	}
}
