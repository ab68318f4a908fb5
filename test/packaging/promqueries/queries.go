// Package promqueries reads the PromQL the project ships: the queries of the
// chart's Grafana dashboard (panels and template variables) and the
// expressions of the Prometheus rules, so that tests can check them against
// the metric names the binaries export (test/observability) and against a
// real Prometheus scraping a real cluster (test/e2e).
package promqueries

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// GrafanaVars returns a replacer that stands in for Grafana's template
// variables, so that a query reads as Prometheus would receive it for that
// namespace and pipeline, with rateInterval for $__rate_interval.
func GrafanaVars(namespace, pipeline, rateInterval string) *strings.Replacer {
	return strings.NewReplacer("$__rate_interval", rateInterval, "$__interval", rateInterval,
		"$namespace", namespace, "$pipeline", pipeline)
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Dashboard returns the PromQL queries of the Grafana dashboard at path,
// with vars applied, keyed by where they are: "PANEL TITLE #A" for the first
// target of a panel, "variable NAME" for the selector of a query variable
// (label_values(SELECTOR, LABEL)).
func Dashboard(path string, vars *strings.Replacer) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	q := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			q[p.Title+" #"+string(rune('A'+i))] = vars.Replace(tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s string
		switch qv := v.Query.(type) {
		case string:
			s = qv
		case map[string]any:
			s, _ = qv["query"].(string)
		}
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("%s: variable %s: query %q is not label_values(SELECTOR, LABEL)", path, v.Name, s)
		}
		q["variable "+v.Name] = vars.Replace(m[1])
	}
	return q, nil
}

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert"`
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// Rules returns the expressions of the Prometheus rules file at path, keyed
// "alert NAME" (or "alert RECORD" for recording rules).
func Rules(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f rulesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	q := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			q["alert "+r.Alert+r.Record] = r.Expr
		}
	}
	return q, nil
}
