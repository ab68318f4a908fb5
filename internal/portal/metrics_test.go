package portal

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kafkasend.io/kafkasend/pkg/wire"
)

// scrape returns the worker's /metrics page.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestMetricsForDashboardsAndAlerts(t *testing.T) {
	m := NewMetrics()
	m.SetCapacity(40, 64<<20)
	o := upstreamObserver{m}
	o.UpstreamDone("GET", 200, wire.ErrorNone, time.Millisecond)
	o.UpstreamDone("GET", 204, wire.ErrorNone, time.Millisecond)
	o.UpstreamDone("POST", 503, wire.ErrorNone, time.Millisecond)
	o.UpstreamDone("GET", 504, wire.ErrorTimeout, time.Second)
	m.reexecuted.Inc()
	m.handoverJobs.Set(1)

	page := scrape(t, m)
	for _, want := range []string{
		`kafkasend_build_info{goversion="go`,
		`kafkasend_portal_upstream_responses_total{class="2xx"} 2`,
		`kafkasend_portal_upstream_responses_total{class="5xx"} 1`,
		`kafkasend_portal_upstream_responses_total{class="4xx"} 0`,
		`kafkasend_portal_upstream_responses_total{class="error"} 1`,
		"kafkasend_portal_max_in_flight_jobs 40\n",
		"kafkasend_portal_max_held_bytes 6.7108864e+07\n",
		"kafkasend_portal_jobs_reexecuted_total 1\n",
		"kafkasend_portal_handover_jobs 1\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(page, "# HELP kafkasend_portal_jobs_reexecuted_total Handed-over jobs this worker ran") {
		t.Error("jobs_reexecuted_total has no help text")
	}
}

func TestStatusClass(t *testing.T) {
	for _, tc := range []struct {
		status int
		kind   wire.ErrorKind
		want   string
	}{
		{100, wire.ErrorNone, "1xx"}, {200, wire.ErrorNone, "2xx"}, {302, wire.ErrorNone, "3xx"},
		{404, wire.ErrorNone, "4xx"}, {599, wire.ErrorNone, "5xx"},
		{401, wire.ErrorAuth, "error"}, {502, wire.ErrorUnreachable, "error"}, {0, wire.ErrorNone, "error"}, {600, wire.ErrorNone, "error"},
	} {
		if got := statusClass(tc.status, tc.kind); got != tc.want {
			t.Errorf("statusClass(%d, %q) = %q, want %q", tc.status, tc.kind, got, tc.want)
		}
	}
}
