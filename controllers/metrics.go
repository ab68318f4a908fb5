package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Operator metrics, on controller-runtime's registry (served by the
// manager's metrics endpoint), one series per pipeline.
var (
	metricLagRecords = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasend_pipeline_lag_records",
		Help: "Records between the consumer group's committed offsets and the log ends of the requests topic, answered ones included.",
	}, []string{"namespace", "name"})
	metricBacklogJobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasend_pipeline_backlog_jobs",
		Help: "Unanswered records of the requests topic: waiting to be consumed or in flight (what the autoscaler sizes on).",
	}, []string{"namespace", "name"})
	metricDesiredReplicas = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasend_pipeline_desired_replicas",
		Help: "Worker replicas the operator asks the Deployment for.",
	}, []string{"namespace", "name"})
	metricReadyReplicas = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasend_pipeline_ready_replicas",
		Help: "Available worker replicas.",
	}, []string{"namespace", "name"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(metricLagRecords, metricBacklogJobs, metricDesiredReplicas, metricReadyReplicas)
}

// recordMetrics publishes a pipeline's status figures.
func recordMetrics(key types.NamespacedName, lagRecords, backlog *int64, desired, ready int32) {
	l := prometheus.Labels{"namespace": key.Namespace, "name": key.Name}
	if lagRecords != nil {
		metricLagRecords.With(l).Set(float64(*lagRecords))
	}
	if backlog != nil {
		metricBacklogJobs.With(l).Set(float64(*backlog))
	}
	metricDesiredReplicas.With(l).Set(float64(desired))
	metricReadyReplicas.With(l).Set(float64(ready))
}

// forgetMetrics drops a deleted pipeline's series.
func forgetMetrics(key types.NamespacedName) {
	l := prometheus.Labels{"namespace": key.Namespace, "name": key.Name}
	for _, g := range []*prometheus.GaugeVec{metricLagRecords, metricBacklogJobs, metricDesiredReplicas, metricReadyReplicas} {
		g.Delete(l)
	}
}
