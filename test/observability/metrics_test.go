// Package observability checks that what the project ships for Prometheus
// and Grafana (config/prometheus/rules.yaml, the chart's dashboard and its
// copy of the rules) only asks for metrics the binaries export.
package observability

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/version"
	"kafkasend.io/kafkasend/test/packaging/promqueries"
)

// operatorMetrics are the operator's per-pipeline gauges (labels namespace
// and name), registered by controllers/ on controller-runtime's registry.
// They have no series until a pipeline is reconciled, so they are listed
// here rather than gathered.
var operatorMetrics = []string{
	"kafkasend_pipeline_lag_records",
	"kafkasend_pipeline_backlog_jobs",
	"kafkasend_pipeline_desired_replicas",
	"kafkasend_pipeline_ready_replicas",
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exported is every series name the worker, the manager and the operator's
// controllers export (histograms with their _bucket, _sum and _count).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, n := range operatorMetrics {
		names[n] = true
	}
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		portal.NewMetrics().Describe(ch)
		version.NewCollector().Describe(ch)
		close(ch)
	}()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names[m[1]] = true
	}
	// Histograms: the worker's are named *_seconds.
	for n := range names {
		if strings.HasSuffix(n, "_seconds") {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
	}
	for _, want := range []string{"kafkasend_portal_jobs_reexecuted_total", "kafkasend_build_info", "kafkasend_portal_job_duration_seconds_bucket"} {
		if !names[want] {
			t.Fatalf("the exported names lack %s: %v", want, names)
		}
	}
	return names
}

// metricNames parses a PromQL expression and returns the metric names it selects.
func metricNames(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			out = append(out, name)
		}
		return nil
	})
	return out, nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = filepath.Dir(dir)
	}
}

// dashboardQueries returns the dashboard's PromQL queries, keyed by where
// they are.
func dashboardQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	q, err := promqueries.Dashboard(path, promqueries.GrafanaVars("team-a", "orders", "5m"))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) < 10 {
		t.Fatalf("%s: only %d queries", path, len(q))
	}
	return q
}

func ruleExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	q, err := promqueries.Rules(path)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// check fails for every query that does not parse or selects a metric not
// in names.
func check(t *testing.T, queries map[string]string, names map[string]bool) {
	t.Helper()
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		used, err := metricNames(queries[k])
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", k, queries[k], err)
			continue
		}
		if len(used) == 0 {
			t.Errorf("%s: %q selects no metric", k, queries[k])
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s: %q uses %s, which nothing exports", k, queries[k], n)
			}
		}
	}
}

func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	check(t, dashboardQueries(t, filepath.Join(repoRoot(t), "charts", "kafkasend", "files", "dashboard.json")), exported(t))
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	q := ruleExprs(t, filepath.Join(repoRoot(t), "config", "prometheus", "rules.yaml"))
	if len(q) < 8 {
		t.Fatalf("only %d rules", len(q))
	}
	check(t, q, exported(t))
}

// TestCheckCatchesUnknownMetrics shows that the check above can fail.
func TestCheckCatchesUnknownMetrics(t *testing.T) {
	names := exported(t)
	for _, bad := range []string{`rate(kafkasend_portal_jobs_total[5m])`, `sum(kafkasend_portal_in_flight_jobs{`} {
		used, err := metricNames(bad)
		ok := err == nil
		for _, n := range used {
			ok = ok && names[n]
		}
		if ok {
			t.Errorf("%q passed the check", bad)
		}
	}
}

// TestChartRulesAreConfigRules fails when the chart's copy of the rules is
// stale (run make manifests).
func TestChartRulesAreConfigRules(t *testing.T) {
	root := repoRoot(t)
	want, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "charts", "kafkasend", "files", "prometheus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("charts/kafkasend/files/prometheus-rules.yaml differs from config/prometheus/rules.yaml: run make manifests")
	}
}
