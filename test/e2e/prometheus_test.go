package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"kafkasend.io/kafkasend/test/packaging/promqueries"
)

// What the project ships for Prometheus and Grafana, from test/e2e.
const (
	scrapeConfigPath = "../../config/prometheus/scrape-config.yaml"
	rulesPath        = "../../config/prometheus/rules.yaml"
	dashboardPath    = "../../charts/kafkasend/files/dashboard.json"
	// The jobs of the shipped scrape config: the workers and the operator.
	workerJob   = "kafkasend-portal"
	operatorJob = "kafkasend-operator"
	// promRateInterval stands in for Grafana's $__rate_interval: at the
	// test's 2 s scrape interval a minute holds plenty of samples.
	promRateInterval = "1m"
)

// prometheus is a Prometheus server (Debian's prometheus package) on
// loopback that discovers the cluster's pods through the API server.
type prometheus struct {
	url string
	dir string
}

// startPrometheus runs Prometheus with the shipped scrape jobs
// (config/prometheus/scrape-config.yaml: the workers and the operator) and
// the shipped alert rules. Debian's build of Prometheus
// has no Kubernetes service discovery, so the test stands in for it: every
// two seconds it writes the cluster's pods, one target per declared
// container port with the __meta_kubernetes_* labels that kubernetes_sd's
// pod role gives, to a file_sd file that replaces each job's
// kubernetes_sd_configs; the shipped relabeling then runs unchanged. Its
// data lives in a temporary folder; the process and the writer stop (and
// Prometheus dies with the test binary) when the test ends.
func startPrometheus(t *testing.T, c *cluster) (*prometheus, error) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, fmt.Errorf("no prometheus binary (Debian's prometheus package; hack/e2e.sh installs it when root): %w", err)
	}
	dir, err := os.MkdirTemp("", "kafkasend-e2e-prometheus-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	targetsPath := filepath.Join(dir, "pods.json")
	if err := writePodTargets(c, targetsPath); err != nil {
		return nil, fmt.Errorf("listing the cluster's pods for Prometheus: %w", err)
	}
	stopSD := make(chan struct{})
	sdDone := make(chan struct{})
	go func() {
		defer close(sdDone)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSD:
				return
			case <-tick.C:
				_ = writePodTargets(c, targetsPath) // the next tick retries
			}
		}
	}()
	t.Cleanup(func() { close(stopSD); <-sdDone })

	shipped, err := os.ReadFile(scrapeConfigPath)
	if err != nil {
		return nil, err
	}
	var sc struct {
		ScrapeConfigs []map[string]any `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(shipped, &sc); err != nil {
		return nil, fmt.Errorf("%s: %w", scrapeConfigPath, err)
	}
	if len(sc.ScrapeConfigs) == 0 {
		return nil, fmt.Errorf("%s: no scrape_configs", scrapeConfigPath)
	}
	fileSD := []any{map[string]any{"files": []string{targetsPath}, "refresh_interval": "2s"}}
	for _, job := range sc.ScrapeConfigs {
		sds, _ := job["kubernetes_sd_configs"].([]any)
		if len(sds) != 1 || sds[0].(map[string]any)["role"] != "pod" {
			return nil, fmt.Errorf("%s: job %v: want one kubernetes_sd_configs entry with role pod, got %v", scrapeConfigPath, job["job_name"], sds)
		}
		delete(job, "kubernetes_sd_configs")
		job["file_sd_configs"] = fileSD
	}
	rules, err := filepath.Abs(rulesPath)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"global":         map[string]any{"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
		"rule_files":     []string{rules},
		"scrape_configs": sc.ScrapeConfigs,
	}
	jobs := map[string]bool{}
	for _, job := range sc.ScrapeConfigs {
		jobs[fmt.Sprint(job["job_name"])] = true
	}
	if !jobs[workerJob] || !jobs[operatorJob] {
		return nil, fmt.Errorf("%s: want the jobs %s and %s, got %v", scrapeConfigPath, workerJob, operatorJob, jobs)
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1h", "--web.listen-address="+addr, "--log.level=warn")
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); _ = logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b[max(0, len(b)-4000):])
	}
	p := &prometheus{url: "http://" + addr, dir: dir}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("prometheus exited (%w):\n%s", err, logTail())
		default:
		}
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("Prometheus %s on %s, config %s", promVersion(bin), p.url, cfgPath)
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("prometheus not ready on %s after 90s:\n%s", p.url, logTail())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// sdTargetGroup is one entry of a file_sd file.
type sdTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// writePodTargets writes every pod with an address as kubernetes_sd's pod
// role would list it: one target per declared container port, labelled
// with the pod's namespace, name, labels, annotations and the port.
// The file is replaced in one rename, as file_sd wants.
func writePodTargets(c *cluster, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := c.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	groups := []sdTargetGroup{}
	for _, pod := range pods.Items {
		if pod.Status.PodIP == "" {
			continue
		}
		base := map[string]string{
			"__meta_kubernetes_namespace":     pod.Namespace,
			"__meta_kubernetes_pod_name":      pod.Name,
			"__meta_kubernetes_pod_ip":        pod.Status.PodIP,
			"__meta_kubernetes_pod_phase":     string(pod.Status.Phase),
			"__meta_kubernetes_pod_ready":     strconv.FormatBool(podReady(pod)),
			"__meta_kubernetes_pod_uid":       string(pod.UID),
			"__meta_kubernetes_pod_node_name": pod.Spec.NodeName,
		}
		for k, v := range pod.Labels {
			base["__meta_kubernetes_pod_label_"+sanitizeLabel(k)] = v
			base["__meta_kubernetes_pod_labelpresent_"+sanitizeLabel(k)] = "true"
		}
		for k, v := range pod.Annotations {
			base["__meta_kubernetes_pod_annotation_"+sanitizeLabel(k)] = v
			base["__meta_kubernetes_pod_annotationpresent_"+sanitizeLabel(k)] = "true"
		}
		for _, ct := range pod.Spec.Containers {
			for _, port := range ct.Ports {
				l := maps.Clone(base)
				l["__meta_kubernetes_pod_container_name"] = ct.Name
				l["__meta_kubernetes_pod_container_port_name"] = port.Name
				l["__meta_kubernetes_pod_container_port_number"] = strconv.Itoa(int(port.ContainerPort))
				l["__meta_kubernetes_pod_container_port_protocol"] = string(port.Protocol)
				groups = append(groups, sdTargetGroup{
					Targets: []string{net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))},
					Labels:  l,
				})
			}
		}
	}
	data, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sanitizeLabel turns a Kubernetes label or annotation name into the
// Prometheus label name suffix kubernetes_sd uses (every character outside
// [a-zA-Z0-9_] becomes _).
func sanitizeLabel(s string) string {
	return invalidLabelChars.ReplaceAllString(s, "_")
}

var invalidLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func promVersion(bin string) string {
	out, err := run(30*time.Second, "", cleanEnv(), bin, "--version")
	if err != nil {
		return "?"
	}
	first, _, _ := strings.Cut(out, "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "prometheus, "))
}

// promSeries is one series of an instant query's vector result.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSeries) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// get calls the HTTP API and decodes its data; a failed call's error is
// Prometheus's own (errorType and error).
func (p *prometheus) get(path string, params url.Values, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("HTTP %d, not the API's JSON: %q", resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// query runs an instant query; scalars and strings count as one series.
func (p *prometheus) query(expr string) ([]promSeries, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var s []promSeries
		err := json.Unmarshal(d.Result, &s)
		return s, err
	case "scalar", "string":
		var v [2]any
		err := json.Unmarshal(d.Result, &v)
		return []promSeries{{Value: v}}, err
	default:
		return nil, fmt.Errorf("result type %q from an instant query", d.ResultType)
	}
}

type promTarget struct {
	ScrapePool string            `json:"scrapePool"`
	Labels     map[string]string `json:"labels"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	ScrapeURL  string            `json:"scrapeUrl"`
}

func (p *prometheus) targets() ([]promTarget, error) {
	var d struct {
		ActiveTargets []promTarget `json:"activeTargets"`
	}
	err := p.get("/api/v1/targets", url.Values{"state": {"active"}}, &d)
	return d.ActiveTargets, err
}

type promRule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
}

func (p *prometheus) rules() ([]promRule, error) {
	var d struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	err := p.get("/api/v1/rules", nil, &d)
	var out []promRule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out, err
}

// dashboardWantsData are the dashboard queries that must return series once
// the pipeline has answered jobs: the operator's per-pipeline gauges (and
// the dashboard's variables, read from them), jobs/s by outcome, latency,
// upstream status classes, capacity and its use, token refreshes and the
// versions running. Dead letters, produce errors, re-executions and
// back-pressure need a failure to have series, so they are only checked to
// be valid queries.
var dashboardWantsData = []string{
	"variable namespace",
	"variable pipeline",
	"Backlog (jobs waiting) #A",
	"Consumer lag (records) #A",
	"Replicas: desired and ready #A",
	"Replicas: desired and ready #B",
	"Jobs/s by outcome #A",
	"Job latency (first chunk to acknowledged answer) #A",
	"Job latency (first chunk to acknowledged answer) #B",
	"Job latency (first chunk to acknowledged answer) #C",
	"Upstream responses by status class #A",
	"Upstream latency #A",
	"In flight and limit, per worker #A",
	"In flight and limit, per worker #B",
	"Held bytes and budget, per worker #A",
	"Held bytes and budget, per worker #B",
	"Token refreshes #A",
	"Versions running #A",
}

// Real Prometheus: it scrapes the pipeline's worker pods (the shipped scrape
// job) and the operator; every dashboard query and alert expression is valid
// there, the ones a user looks at after jobs were answered return data, and
// every shipped alert rule is loaded and evaluates without error.
func testPrometheus(t *testing.T, c *cluster, prom *prometheus, promErr error, p pipeline) {
	if promErr != nil {
		t.Fatal(promErr)
	}
	start := time.Now()
	// Fresh traffic, so that the rates over the last minute are not zero.
	rc := p.requester(t, c, 0)
	paths := make([]string, 20)
	for i := range paths {
		paths[i] = fmt.Sprintf("/echo?id=prom-%d", i)
	}
	requireAllOK(t, c, "jobs before the Prometheus checks", awaitAll(rc, submitAll(t, rc, paths), 2*time.Minute))

	c.waitFor(t, "Prometheus scraping every worker pod of the pipeline and the operator", 90*time.Second, func() (bool, string) {
		workerIPs := podIPs(c.workerPods(t, p.name))
		ts, err := prom.targets()
		if err != nil {
			return false, err.Error()
		}
		var state []string
		workersUp, operatorUp := 0, 0
		for _, tg := range ts {
			state = append(state, fmt.Sprintf("%s %s %s %q", tg.ScrapePool, tg.ScrapeURL, tg.Health, tg.LastError))
			if tg.Health != "up" {
				continue
			}
			switch {
			case tg.ScrapePool == workerJob && tg.Labels["pipeline"] == p.name && tg.Labels["namespace"] == pipelineNS &&
				slices.ContainsFunc(workerIPs, func(ip string) bool { return strings.Contains(tg.ScrapeURL, "//"+ip+":") }):
				workersUp++
			case tg.ScrapePool == operatorJob:
				operatorUp++
			}
		}
		return workersUp == len(workerIPs) && operatorUp > 0,
			fmt.Sprintf("%d of %d worker pods (%v) and %d operator pods up; targets: %s", workersUp, len(workerIPs), workerIPs, operatorUp, strings.Join(state, "; "))
	})

	dash, err := promqueries.Dashboard(dashboardPath, promqueries.GrafanaVars(pipelineNS, p.name, promRateInterval))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range dashboardWantsData {
		if _, ok := dash[k]; !ok {
			t.Fatalf("the dashboard has no query %q (panels renamed? update dashboardWantsData)", k)
		}
	}
	alerts, err := promqueries.Rules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for k, q := range dash {
		all["dashboard: "+k] = q
	}
	for k, q := range alerts {
		all["rules.yaml: "+k] = q
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// The checks below can fail: Prometheus refuses a broken query, and a
	// metric nothing exports has no series.
	if _, err := prom.query(`sum(kafkasend_portal_in_flight_jobs{`); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("a broken query: want Prometheus's bad_data error, got %v", err)
	}
	if s, err := prom.query(`kafkasend_portal_jobs_total{pipeline="` + p.name + `"}`); err != nil || len(s) != 0 {
		t.Errorf("a metric nothing exports: want no series, got %v (%v)", s, err)
	}

	// Valid: Prometheus runs every query without an error.
	results := map[string][]promSeries{}
	for _, k := range keys {
		s, err := prom.query(all[k])
		if err != nil {
			t.Errorf("%s: Prometheus refused the query %q: %v", k, all[k], err)
			continue
		}
		results[k] = s
	}

	// Data: the queries a user looks at after jobs were answered return
	// series (the scrapes after the jobs may take a few seconds to land).
	missing := func() []string {
		var m []string
		for _, k := range dashboardWantsData {
			if len(results["dashboard: "+k]) == 0 {
				m = append(m, k)
			}
		}
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
		for _, k := range missing() {
			if s, err := prom.query(dash[k]); err == nil {
				results["dashboard: "+k] = s
			}
		}
	}
	for _, k := range missing() {
		t.Errorf("dashboard: %s: no data for %q after the pipeline answered jobs", k, dash[k])
	}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-75s %d series\n", k, len(results[k]))
	}
	t.Logf("queries on Prometheus (namespace %s, pipeline %s, $__rate_interval %s):\n%s", pipelineNS, p.name, promRateInterval, b.String())

	// What those series say: jobs answered OK at a non-zero rate, the
	// limit the pipeline set, and one version across operator and workers.
	var okRate float64
	for _, s := range results["dashboard: Jobs/s by outcome #A"] {
		if s.Metric["outcome"] == "ok" {
			okRate = s.value()
		}
	}
	if !(okRate > 0) {
		t.Errorf("jobs/s with outcome ok is %v, want > 0 after 20 jobs were answered: %v", okRate, results["dashboard: Jobs/s by outcome #A"])
	}
	for _, s := range results["dashboard: In flight and limit, per worker #B"] {
		if s.value() != 2 {
			t.Errorf("max in-flight of %s is %v, want the pipeline's concurrency.maxInFlight 2", s.Metric["pod"], s.value())
		}
	}
	versions, err := prom.query(`count by (version, job) (kafkasend_build_info)`)
	if err != nil {
		t.Fatal(err)
	}
	byJob, seen := map[string]string{}, map[string]bool{}
	for _, s := range versions {
		byJob[s.Metric["job"]] = s.Metric["version"]
		seen[s.Metric["version"]] = true
	}
	if byJob[workerJob] == "" || byJob[operatorJob] == "" || len(seen) != 1 {
		t.Errorf("kafkasend_build_info: want one version on the operator and the workers, got version by job %v", byJob)
	}

	// The shipped rules are loaded and evaluate without error.
	var ruleState string
	c.waitFor(t, "every shipped alert rule evaluated", 60*time.Second, func() (bool, string) {
		rs, err := prom.rules()
		if err != nil {
			return false, err.Error()
		}
		var state []string
		healthy := 0
		for _, r := range rs {
			state = append(state, fmt.Sprintf("%s %s/%s %q", r.Name, r.Health, r.State, r.LastError))
			if r.Health == "ok" {
				healthy++
			}
			if r.Health == "err" {
				return true, strings.Join(state, "; ")
			}
		}
		ruleState = strings.Join(state, "; ")
		return len(rs) == len(alerts) && healthy == len(rs), fmt.Sprintf("%d of %d rules loaded, %d healthy: %s", len(rs), len(alerts), healthy, ruleState)
	})
	rs, err := prom.rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
		}
		if r.State == "firing" {
			t.Logf("note: alert %s is firing after the earlier steps", r.Name)
		}
	}
	if len(rs) != len(alerts) {
		t.Errorf("Prometheus loaded %d rules from %s, want %d", len(rs), rulesPath, len(alerts))
	}
	t.Logf("Prometheus checks: %d dashboard queries and %d alert expressions valid, %d with data as required, %d rules healthy, in %s; version by job %v",
		len(dash), len(alerts), len(dashboardWantsData), len(rs), time.Since(start).Round(100*time.Millisecond), byJob)
}
