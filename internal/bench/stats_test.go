package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{1, 1 * time.Millisecond},
		{50, 50 * time.Millisecond},
		{95, 95 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{99.5, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
	} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if s[0] != 100*time.Millisecond {
		t.Errorf("Percentile sorted its input in place")
	}
}

func TestPercentileSmallSamples(t *testing.T) {
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("empty sample: got %v, want 0", got)
	}
	one := []time.Duration{7 * time.Second}
	for _, p := range []float64{0, 50, 99, 100} {
		if got := Percentile(one, p); got != 7*time.Second {
			t.Errorf("one sample, p%v: got %v, want 7s", p, got)
		}
	}
	// Nearest rank of p95 among 10 samples is the 10th: the slowest job.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 1000}
	if got := Percentile(ten, 95); got != 1000 {
		t.Errorf("p95 of 10 samples = %v, want the largest (1000ns)", got)
	}
	if got := Percentile(ten, 90); got != 9 {
		t.Errorf("p90 of 10 samples = %v, want 9ns", got)
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]time.Duration{3 * time.Second, time.Second, 2 * time.Second})
	if s.N != 3 || s.Min != time.Second || s.Max != 3*time.Second || s.Mean != 2*time.Second || s.P50 != 2*time.Second || s.P99 != 3*time.Second {
		t.Errorf("Summarize(1s,2s,3s) = %+v", s)
	}
	if z := Summarize(nil); z != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", z)
	}
}

func TestRatioAndRounding(t *testing.T) {
	if got := ratio(1000, 40); got != 25 {
		t.Errorf("ratio(1000, 40) = %v", got)
	}
	if got := ratio(5, 0); got != 0 {
		t.Errorf("ratio by zero = %v, want 0", got)
	}
	if got := ms(1234567 * time.Nanosecond); got != 1.23 {
		t.Errorf("ms(1.234567ms) = %v, want 1.23", got)
	}
}

func TestIsSlowAtSpreadsSlowJobsEvenly(t *testing.T) {
	const slow, total = 10, 210
	n, last, maxGap := 0, -1, 0
	for i := range total {
		if isSlowAt(i, slow, total) {
			n++
			if last >= 0 {
				maxGap = max(maxGap, i-last)
			}
			last = i
		}
	}
	if n != slow {
		t.Fatalf("%d slow jobs placed, want %d", n, slow)
	}
	if maxGap != total/slow {
		t.Errorf("slow jobs are up to %d apart, want evenly every %d", maxGap, total/slow)
	}
}

func TestWriteResultTableAndJSONLastLine(t *testing.T) {
	res := &MixedResult{Common: Common{Scenario: "mixed", Broker: "kfake", Jobs: 4}, FastP95Ratio: 21.5}
	res.Async.FastP95Ms = 60
	var out strings.Builder
	if err := writeResult(&out, res, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	if got["scenario"] != "mixed" || got["fast_p95_ratio"] != 21.5 || got["async"].(map[string]any)["fast_p95_ms"] != 60.0 {
		t.Errorf("JSON = %v", got)
	}
	if !strings.Contains(out.String(), "async.fast_p95_ms") || !strings.Contains(out.String(), "fast_p95_ratio") {
		t.Errorf("table lacks dotted keys:\n%s", out.String())
	}
}

func TestMetricValueSumsSeries(t *testing.T) {
	text := `# HELP kafkasend_portal_in_flight_jobs x
kafkasend_portal_in_flight_jobs 42
kafkasend_portal_in_flight_jobs_other 7
kafkasend_portal_upstream_retries_total{reason="status"} 2
kafkasend_portal_upstream_retries_total{reason="connection"} 3
`
	if v, ok := metricValue(text, "kafkasend_portal_in_flight_jobs"); !ok || v != 42 {
		t.Errorf("in_flight = %v, %v; want 42", v, ok)
	}
	if v, ok := metricValue(text, "kafkasend_portal_upstream_retries_total"); !ok || v != 5 {
		t.Errorf("retries = %v, %v; want 5", v, ok)
	}
	if _, ok := metricValue(text, "absent"); ok {
		t.Errorf("absent metric found")
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{}, ExitUsage},
		{[]string{"--scenario", "nope"}, ExitUsage},
		{[]string{"--scenario", "mixed", "--embedded", "--brokers", "x:1"}, ExitUsage},
		{[]string{"--scenario", "mixed", "--slow", "0", "--fast", "0"}, ExitUsage},
		{[]string{"--help"}, ExitOK},
		{[]string{"--scenario", "throughput", "--brokers", "a:1,b:2"}, -1},
	} {
		var out, errs strings.Builder
		o, code := parseArgs(tc.args, &out, &errs)
		if code != tc.code {
			t.Errorf("parseArgs(%q) code %d, want %d; stderr:\n%s", tc.args, code, tc.code, errs.String())
		}
		if code == -1 && len(o.Brokers) != 2 {
			t.Errorf("parseArgs(%q) brokers %q", tc.args, o.Brokers)
		}
	}
}
