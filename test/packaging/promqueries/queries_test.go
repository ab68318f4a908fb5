package promqueries

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedQueries(t *testing.T) {
	d, err := Dashboard(filepath.Join("..", "..", "..", "charts", "kafkasend", "files", "dashboard.json"), GrafanaVars("team-a", "orders", "5m"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d) < 10 {
		t.Errorf("only %d dashboard queries: %v", len(d), d)
	}
	for k, q := range d {
		if strings.Contains(q, "$") {
			t.Errorf("%s: a Grafana variable is left in %q", k, q)
		}
	}
	if q := d["variable pipeline"]; q != `kafkasend_pipeline_backlog_jobs{namespace=~"team-a"}` {
		t.Errorf("variable pipeline: selector %q", q)
	}
	r, err := Rules(filepath.Join("..", "..", "..", "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r) < 8 || r["alert KafkasendDeadLetters"] == "" {
		t.Errorf("rules: %v", r)
	}
}

func TestDashboardRefusesOtherVariableQueries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.json")
	writeFile(t, path, `{"panels":[],"templating":{"list":[{"name":"x","type":"query","query":"query_result(up)"}]}}`)
	if _, err := Dashboard(path, GrafanaVars("a", "b", "1m")); err == nil || !strings.Contains(err.Error(), "label_values") {
		t.Errorf("want an error naming label_values, got %v", err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
