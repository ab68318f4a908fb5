package version

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestResolve(t *testing.T) {
	built := func(v, rev string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: v}}
			if rev != "" {
				bi.Settings = []debug.BuildSetting{{Key: "vcs.revision", Value: rev}}
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name, v, rev   string
		read           func() (*debug.BuildInfo, bool)
		wantV, wantRev string
	}{
		{"ldflags win", "v1.2.3", "abc", built("v9.9.9", "def"), "v1.2.3", "abc"},
		{"module version and VCS revision", "", "", built("v0.4.0", "def"), "v0.4.0", "def"},
		{"a local build is dev", "", "", built("(devel)", ""), "dev", "unknown"},
		{"no build information", "", "", none, "dev", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := resolve(tc.v, tc.rev, tc.read)
			if i.Version != tc.wantV || i.Revision != tc.wantRev || i.GoVersion == "" {
				t.Errorf("got %+v, want version %q revision %q", i, tc.wantV, tc.wantRev)
			}
		})
	}
}

func TestLineAndCollector(t *testing.T) {
	Version, Revision = "v1.2.3-4-gabcdef0", "abcdef0123"
	t.Cleanup(func() { Version, Revision = "", "" })
	if got := Line("portal"); !strings.HasPrefix(got, "portal v1.2.3-4-gabcdef0 (revision abcdef0123, go") {
		t.Errorf("Line = %q", got)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != BuildInfoName || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, %v: want one %s series", mfs, err, BuildInfoName)
	}
	labels := map[string]string{}
	for _, l := range mfs[0].GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v1.2.3-4-gabcdef0" || labels["revision"] != "abcdef0123" || mfs[0].GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("build_info %v = %v", labels, mfs[0].GetMetric()[0].GetGauge().GetValue())
	}
}
