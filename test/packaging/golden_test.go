package packaging

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestChartGolden renders the chart with the main value combinations and
// compares the output with testdata/golden/*.yaml, so that a review sees
// every change to what the chart renders. After an intended change:
//
//	go test ./test/packaging -run TestChartGolden -update
func TestChartGolden(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"all", []string{"-f", "test/packaging/testdata/values-all.yaml"}},
		{"minimal", []string{"--set", "crds.enabled=false,tests.enabled=false,leaderElection.enabled=false,rbac.aggregateToDefaultRoles=false"}},
		{"secure-metrics", []string{"--set", "metrics.secure=true,metrics.serviceMonitor.enabled=true,workerMetrics.podMonitor.enabled=true,prometheusRule.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := h.run(append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			out = elideCRDs(out)
			path := filepath.Join(h.root, "test", "packaging", "testdata", "golden", tc.name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if string(want) != out {
				t.Errorf("helm template %v differs from %s; if intended, run go test ./test/packaging -run TestChartGolden -update\n%s",
					tc.args, path, lineDiff(string(want), out))
			}
		})
	}
}

var crdSpec = regexp.MustCompile(`(?s)\nkind: CustomResourceDefinition\n.*?\nspec:\n`)

// elideCRDs replaces the spec of each rendered CRD with a note: the spec is
// config/crd/bases' (TestChartCRDsMatchConfig), and the golden files stay
// readable.
func elideCRDs(out string) string {
	docs := strings.Split(out, "\n---\n")
	for i, d := range docs {
		if loc := crdSpec.FindStringIndex(d); loc != nil {
			docs[i] = d[:loc[1]] + "  # elided: config/crd/bases (TestChartCRDsMatchConfig)\n"
		}
	}
	return strings.Join(docs, "\n---\n")
}
