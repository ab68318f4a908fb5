package portal

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/internal/version"
	"kafkasend.io/kafkasend/pkg/wire"
)

const metricsNamespace = "kafkasend_portal"

// Metrics are the worker's Prometheus metrics, on a registry of its own.
type Metrics struct {
	Registry *prometheus.Registry

	collectors []prometheus.Collector

	jobsReceived     prometheus.Counter
	jobsCompleted    *prometheus.CounterVec
	inFlight         prometheus.Gauge
	answering        prometheus.Gauge
	jobDuration      prometheus.Histogram
	recordDelay      prometheus.Histogram
	answerAck        prometheus.Histogram
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
	skippedAnswered  prometheus.Counter
	upstreamStatus   *prometheus.CounterVec
	maxInFlight      prometheus.Gauge
	maxBytes         prometheus.Gauge
	reexecuted       prometheus.Counter
	handoverJobs     prometheus.Gauge
	handoverRecords  *prometheus.CounterVec
	handoverIgnored  prometheus.Counter
	skippedLeased    prometheus.Counter
	metadataDropped  prometheus.Counter
}

// stageBuckets are the buckets of the per-stage latencies: Kafka's legs of
// a job take milliseconds when all is well.
var stageBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

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
			Help: "Assembled jobs holding an in-flight slot: being executed, or answered without a call (errors).",
		}),
		answering: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "answering_jobs",
			Help: "Jobs whose call returned and whose answer awaits Kafka's acknowledgement (they hold no in-flight slot).",
		}),
		recordDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "record_delay_seconds",
			Help: "From a request record's timestamp (set by its producer, or by the broker with LogAppendTime) until the worker handles it: " +
				"the requester's produce, the broker, the fetch and the partition's queue. Clock skew between hosts shifts it.",
			Buckets: stageBuckets,
		}),
		answerAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "answer_ack_seconds",
			Help:    "From handing a job's answer to the producer until Kafka acknowledged all of it.",
			Buckets: stageBuckets,
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
		skippedAnswered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "skipped_answered_total",
			Help: "Records skipped because the commit metadata says their job was already answered (after a crash or rebalance).",
		}),
		upstreamStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "upstream_responses_total",
			Help: "Upstream calls by the status class of the upstream's final answer (1xx to 5xx), or \"error\" when the call ended in an error response (timeout, unreachable, rejected, auth, ...; see jobs_completed_total).",
		}, []string{"class"}),
		maxInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "max_in_flight_jobs",
			Help: "The in-flight limit (spec.concurrency.maxInFlight): consumption pauses when in_flight_jobs reaches it.",
		}),
		maxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "max_held_bytes",
			Help: "The byte budget (spec.concurrency.maxBytes): consumption pauses when held_bytes reaches it.",
		}),
		reexecuted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "jobs_reexecuted_total",
			Help: "Handed-over jobs this worker ran because their lease lapsed (the worker running them died).",
		}),
		handoverJobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "handover_jobs",
			Help: "Jobs of partitions this worker released that still run here under a lease.",
		}),
		handoverRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "handover_records_total",
			Help: "Handover control records sent to a released partition's next owner, by op (renew, done).",
		}, []string{"op"}),
		handoverIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "handover_records_ignored_total",
			Help: "Handover control records read and ignored: malformed, or not signed with the pipeline's handover key.",
		}),
		skippedLeased: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "skipped_leased_total",
			Help: "Records not executed here because their job runs on the worker that released the partition.",
		}),
		metadataDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "commit_metadata_dropped_offsets_total",
			Help: "Answered or leased offsets left out of a commit's metadata for its size limit (they may run again after a hand-over).",
		}),
	}
	m.collectors = []prometheus.Collector{
		version.NewCollector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.jobsReceived, m.jobsCompleted, m.inFlight, m.answering, m.jobDuration, m.recordDelay, m.answerAck, m.upstreamDuration, m.upstreamRetries,
		m.heldBytes, m.partialJobs, m.tokenRefreshes, m.backpressure, m.uncommitted, m.deadLetters,
		m.duplicates, m.produceErrors, m.revokeCancelled, m.skippedAnswered,
		m.upstreamStatus, m.maxInFlight, m.maxBytes, m.reexecuted, m.handoverJobs,
		m.handoverRecords, m.handoverIgnored, m.skippedLeased, m.metadataDropped,
	}
	m.Registry.MustRegister(m.collectors...)
	for _, c := range statusClasses {
		m.upstreamStatus.WithLabelValues(c) // export zeros, so rate() works from the first scrape
	}
	return m
}

// Describe sends the descriptions of every metric the worker exports, also
// of those with no series yet (tests check dashboards and alerts against
// them).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// statusClasses are the upstream_responses_total labels.
var statusClasses = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"}

// statusClass is the upstream_responses_total label of a call's end.
func statusClass(status int, kind wire.ErrorKind) string {
	if kind != wire.ErrorNone || status < 100 || status > 599 {
		return "error"
	}
	return statusClasses[status/100-1]
}

// SetCapacity exports the worker's limits (max_in_flight_jobs,
// max_held_bytes), so that dashboards and alerts compare in_flight_jobs and
// held_bytes with them.
func (m *Metrics) SetCapacity(maxInFlight int, maxBytes int64) {
	m.maxInFlight.Set(float64(maxInFlight))
	m.maxBytes.Set(float64(maxBytes))
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

func (o upstreamObserver) UpstreamDone(method string, status int, kind wire.ErrorKind, d time.Duration) {
	o.m.upstreamDuration.WithLabelValues(method, outcome(kind)).Observe(d.Seconds())
	o.m.upstreamStatus.WithLabelValues(statusClass(status, kind)).Inc()
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
