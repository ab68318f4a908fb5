package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// inFlightMetrics are the worker gauges that count its in-flight jobs (the
// first one found is used).
var inFlightMetrics = []string{"kafkasend_portal_in_flight_jobs", "kafkasend_portal_in_flight"}

// maxMetricsBytes bounds a scraped /metrics page.
const maxMetricsBytes = 4 << 20

// podCoster sets controller.kubernetes.io/pod-deletion-cost on each worker
// pod from its in-flight jobs, read from the worker's /metrics, so that a
// scale-down removes the pods with the least work (the ReplicaSet
// controller deletes the lowest cost first). It runs in the backlog
// poller's goroutine, never in Reconcile, and patches a pod only when its
// cost changes.
type podCoster struct {
	pods   client.Reader
	writer client.Client
	http   *http.Client
	// port overrides the pods' "metrics" container port (tests).
	port int
}

func newPodCoster(pods client.Reader, writer client.Client, port int) *podCoster {
	return &podCoster{pods: pods, writer: writer, port: port, http: &http.Client{
		Timeout: 3 * time.Second,
		// Pod IPs only; never a proxy.
		Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConns: 16, IdleConnTimeout: time.Minute},
	}}
}

// update refreshes the costs of one pipeline's pods.
func (c *podCoster) update(ctx context.Context, key types.NamespacedName) {
	var pods corev1.PodList
	if err := c.pods.List(ctx, &pods, client.InNamespace(key.Namespace), client.MatchingLabels{v1.LabelPipeline: key.Name, v1.LabelName: v1.WorkerAppName}); err != nil {
		log.FromContext(ctx).V(1).Info("Listing worker pods for deletion costs failed", "portalpipeline", key, "error", err.Error())
		return
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
			continue
		}
		n, err := c.inFlight(ctx, pod)
		if err != nil {
			log.FromContext(ctx).V(1).Info("Reading worker in-flight jobs failed", "pod", client.ObjectKeyFromObject(pod), "error", err.Error())
			continue
		}
		cost := strconv.FormatInt(n, 10)
		if pod.Annotations[v1.AnnotationPodDeletionCost] == cost {
			continue
		}
		patch := client.MergeFrom(pod.DeepCopy())
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[v1.AnnotationPodDeletionCost] = cost
		if err := c.writer.Patch(ctx, pod, patch); err != nil {
			log.FromContext(ctx).V(1).Info("Setting pod deletion cost failed", "pod", client.ObjectKeyFromObject(pod), "error", err.Error())
		}
	}
}

// inFlight scrapes one pod's in-flight job count.
func (c *podCoster) inFlight(ctx context.Context, pod *corev1.Pod) (int64, error) {
	port := c.port
	if port == 0 {
		port = metricsPort
		for _, ct := range pod.Spec.Containers {
			for _, p := range ct.Ports {
				if p.Name == "metrics" {
					port = int(p.ContainerPort)
				}
			}
		}
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseInFlight(io.LimitReader(resp.Body, maxMetricsBytes))
}

// parseInFlight reads the in-flight gauge from a Prometheus text page.
func parseInFlight(r io.Reader) (int64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return 0, fmt.Errorf("parsing metrics: %w", err)
	}
	for _, name := range inFlightMetrics {
		if f, ok := families[name]; ok {
			var sum float64
			for _, m := range f.GetMetric() {
				sum += gaugeValue(f.GetType(), m)
			}
			return int64(sum), nil
		}
	}
	return 0, errors.New("no in-flight gauge in the worker's metrics")
}

func gaugeValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return 0
}
