package portal

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

const metricsNamespace = "kafkasend_portal"

// Metrics are the worker's Prometheus metrics, on a registry of its own.
type Metrics struct {
	Registry *prometheus.Registry

	jobsReceived     prometheus.Counter
	jobsCompleted    *prometheus.CounterVec
	inFlight         prometheus.Gauge
	jobDuration      prometheus.Histogram
	upstreamDuration *prometheus.HistogramVec
	upstreamRetries  *prometheus.CounterVec
	heldBytes        prometheus.Gauge
	partialJobs      prometheus.Gauge
	tokenRefreshes   *prometheus.CounterVec
	backpressure     prometheus.Counter
	uncommitted      *prometheus.GaugeVec
	deadLetters      *prometheus.CounterVec
	duplicates       prometheus.Counter
	produceErrors    prometheus.Counter
	revokeCancelled  prometheus.Counter
	handoverJobs     prometheus.Gauge
	handoverRecords  *prometheus.CounterVec
	skippedLeased    prometheus.Counter
	reexecuted       prometheus.Counter
	metadataDropped  prometheus.Counter
	skippedAnswered  prometheus.Counter
}

// NewMetrics registers the worker's metrics (and the Go and process
// collectors) on a new registry.
func NewMetrics() *Metrics {
	durations := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		jobsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "jobs_received_total",
			Help: "Jobs whose chunks were all received and assembled, or rejected on arrival.",
		}),
		jobsCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "jobs_completed_total",
			Help: "Jobs answered with a response acknowledged by Kafka, by outcome: ok or the error kind.",
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "in_flight_jobs",
			Help: "Assembled jobs being executed or answered.",
		}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "job_duration_seconds",
			Help:    "From a job's first chunk to the acknowledgement of its response.",
			Buckets: durations,
		}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "upstream_duration_seconds",
			Help:    "Upstream calls, retries included, by method and outcome.",
			Buckets: durations,
		}, []string{"method", "outcome"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "upstream_retries_total",
			Help: "Repeated upstream attempts, by reason.",
		}, []string{"reason"}),
		heldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "held_bytes",
			Help: "Request bytes held for partial and in-flight jobs.",
		}),
		partialJobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "partial_jobs",
			Help: "Jobs waiting for more chunks.",
		}),
		tokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "token_refreshes_total",
			Help: "Requests to the OAuth2 token endpoint, by result.",
		}, []string{"result"}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "backpressure_seconds_total",
			Help: "Time consumption was paused because the in-flight or byte limit was reached.",
		}),
		uncommitted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "uncommitted_offsets",
			Help: "Per partition: offsets received but not yet committable (their jobs are not answered yet).",
		}, []string{"topic", "partition"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_letters_total",
			Help: "Messages that could not be tied to a job, by reason; sent to the dead-letter topic when one is set.",
		}, []string{"reason"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "duplicate_chunks_total",
			Help: "Chunks received again (redelivery after a rebalance or a requester retry) and ignored.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "produce_errors_total",
			Help: "Failed attempts to produce a response or dead letter (retried).",
		}),
		revokeCancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "revoked_jobs_cancelled_total",
			Help: "In-flight jobs given up without an answer (stop deadline passed, or their first worker answered them after their lease lapsed); their partition's owner runs them, or has their answer.",
		}),
		handoverJobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "handover_jobs",
			Help: "Jobs of partitions this worker released that still run here under a lease.",
		}),
		handoverRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "handover_records_total",
			Help: "Handover control records sent to a released partition's next owner, by op (renew, done).",
		}, []string{"op"}),
		skippedLeased: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "skipped_leased_total",
			Help: "Records not executed here because their job runs on the worker that released the partition.",
		}),
		reexecuted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "jobs_reexecuted_total",
			Help: "Handed-over jobs run here because their lease lapsed (their first worker died).",
		}),
		metadataDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "commit_metadata_dropped_offsets_total",
			Help: "Answered or leased offsets left out of a commit's metadata for its size limit (they may run again after a hand-over).",
		}),
		skippedAnswered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "skipped_answered_total",
			Help: "Records skipped because the commit metadata says their job was already answered (after a crash or rebalance).",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.jobsReceived, m.jobsCompleted, m.inFlight, m.jobDuration, m.upstreamDuration, m.upstreamRetries,
		m.heldBytes, m.partialJobs, m.tokenRefreshes, m.backpressure, m.uncommitted, m.deadLetters,
		m.duplicates, m.produceErrors, m.revokeCancelled, m.skippedAnswered,
		m.handoverJobs, m.handoverRecords, m.skippedLeased, m.reexecuted, m.metadataDropped,
	)
	return m
}

// outcome is the jobs_completed_total label of a response.
func outcome(kind wire.ErrorKind) string {
	if kind == wire.ErrorNone {
		return "ok"
	}
	return string(kind)
}

// upstreamObserver feeds the executor's events into the metrics.
type upstreamObserver struct{ m *Metrics }

var _ upstream.Observer = upstreamObserver{}

func (o upstreamObserver) UpstreamDone(method string, _ int, kind wire.ErrorKind, d time.Duration) {
	o.m.upstreamDuration.WithLabelValues(method, outcome(kind)).Observe(d.Seconds())
}

func (o upstreamObserver) UpstreamRetry(_ string, reason string) {
	o.m.upstreamRetries.WithLabelValues(reason).Inc()
}

func (o upstreamObserver) TokenRefreshed(ok bool) {
	r := "ok"
	if !ok {
		r = "error"
	}
	o.m.tokenRefreshes.WithLabelValues(r).Inc()
}
