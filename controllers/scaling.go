package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/types"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/lag"
)

// LagSource measures the consumer lag of a pipeline's group on its requests topic.
type LagSource interface {
	Lag(ctx context.Context, p *kafkasendv1alpha1.PortalPipeline, creds kafkaconf.Credentials) (lag.Result, error)
}

// KafkaLagSource measures lag with a short-lived sarama client per call.
type KafkaLagSource struct {
	// Timeout bounds one measurement (default 10s).
	Timeout time.Duration
}

// Lag implements LagSource.
func (k KafkaLagSource) Lag(ctx context.Context, p *kafkasendv1alpha1.PortalPipeline, creds kafkaconf.Credentials) (lag.Result, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ks := p.Spec.Kafka
	opts := kafkaconf.Options{
		Version:     ks.Version,
		ClientID:    "kafkasend-operator",
		TLS:         ks.TLS != nil,
		DialTimeout: timeout / 3,
	}
	if ks.SASL != nil {
		opts.SASLMechanism = string(ks.SASL.Mechanism)
	}
	cfg, err := kafkaconf.New(opts, creds)
	if err != nil {
		return lag.Result{}, err
	}
	cfg.Metadata.Retry.Max = 1
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Metadata.Full = false
	type result struct {
		r   lag.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(ks.BootstrapServers, cfg)
		if err != nil {
			done <- result{err: fmt.Errorf("connecting to %s: %w", strings.Join(ks.BootstrapServers, ","), err)}
			return
		}
		defer c.Close()
		r, err := lag.Measure(ctx, c, ConsumerGroup(p), p.Spec.Topics.Requests, ks.InitialOffset != kafkasendv1alpha1.InitialOffsetLatest)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-ctx.Done():
		return lag.Result{}, fmt.Errorf("measuring lag: %w", ctx.Err())
	}
}

// lagObservation is the lag the status reports.
type lagObservation struct {
	total      int64
	partitions int32
	at         time.Time
}

// lagMemo remembers the last measurement per pipeline so that reconciles
// triggered by child updates do not query Kafka more often than the poll
// interval.
type lagMemo struct {
	mu   sync.Mutex
	last map[types.NamespacedName]lagMemoEntry
}

type lagMemoEntry struct {
	obs *lagObservation
	err error
	at  time.Time
}

func (m *lagMemo) get(key types.NamespacedName, now time.Time, maxAge time.Duration) (lagMemoEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.last[key]
	if !ok || now.Sub(e.at) >= maxAge {
		return lagMemoEntry{}, false
	}
	return e, true
}

func (m *lagMemo) put(key types.NamespacedName, e lagMemoEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[types.NamespacedName]lagMemoEntry{}
	}
	m.last[key] = e
}

func (m *lagMemo) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, key)
}

// measureLag returns the pipeline's lag, measured at most once per poll interval.
func (r *PortalPipelineReconciler) measureLag(ctx context.Context, p *kafkasendv1alpha1.PortalPipeline, files map[string][]byte) (*lagObservation, error) {
	if r.Lag == nil {
		return nil, nil
	}
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	now := r.now()
	interval := durationOr(p.Spec.Scaling.PollInterval, 30*time.Second)
	if e, ok := r.lagMemo.get(key, now, interval); ok {
		return e.obs, e.err
	}
	creds := kafkaconf.Credentials{
		CA:       files["kafka/ca.crt"],
		Cert:     files["kafka/tls.crt"],
		Key:      files["kafka/tls.key"],
		Username: strings.TrimRight(string(files["kafka/sasl-username"]), "\r\n"),
		Password: strings.TrimRight(string(files["kafka/sasl-password"]), "\r\n"),
	}
	res, err := r.Lag.Lag(ctx, p, creds)
	e := lagMemoEntry{at: now, err: err}
	if err == nil {
		e.obs = &lagObservation{total: res.Total, partitions: res.Partitions, at: now}
	}
	r.lagMemo.put(key, e)
	return e.obs, e.err
}

// desiredReplicas decides the worker count: spec.replicas when autoscaling
// is off, else the autoscaler's answer from the lag. It reports whether the
// count differs from spec.replicas (which the caller then updates through the
// scale subresource).
func (r *PortalPipelineReconciler) desiredReplicas(p *kafkasendv1alpha1.PortalPipeline, l *lagObservation) (int32, bool) {
	var have int32 = -1
	if p.Spec.Replicas != nil {
		have = *p.Spec.Replicas
	}
	if !autoscaling(p) {
		return max(have, 0), false
	}
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	want := r.scaler.recommend(key, scaleInput{
		now: r.now(), current: have, lag: l,
		min: minReplicas(p), max: maxReplicas(p),
		target: targetLag(p),
		window: durationOr(p.Spec.Scaling.ScaleDownStabilizationWindow, 5*time.Minute),
	})
	return want, want != have
}

func autoscaling(p *kafkasendv1alpha1.PortalPipeline) bool {
	return p.Spec.Scaling.Enabled == nil || *p.Spec.Scaling.Enabled
}

func minReplicas(p *kafkasendv1alpha1.PortalPipeline) int32 {
	if p.Spec.Scaling.MinReplicas == nil {
		return 1
	}
	return *p.Spec.Scaling.MinReplicas
}

func maxReplicas(p *kafkasendv1alpha1.PortalPipeline) int32 {
	if p.Spec.Scaling.MaxReplicas <= 0 {
		return max(10, minReplicas(p))
	}
	return p.Spec.Scaling.MaxReplicas
}

func targetLag(p *kafkasendv1alpha1.PortalPipeline) int64 {
	if p.Spec.Scaling.TargetLagPerReplica <= 0 {
		return 100
	}
	return p.Spec.Scaling.TargetLagPerReplica
}

// scaleInput is what one autoscaling decision looks at.
type scaleInput struct {
	now time.Time
	// current is the Deployment's replica count, -1 when there is none yet.
	current  int32
	lag      *lagObservation
	min, max int32
	target   int64
	window   time.Duration
}

// autoscaler turns lag into a replica count: ceil(lag / target), clamped to
// [min, max] and to the partition count (more consumers than partitions sit
// idle), raised at once, and lowered only to the highest recommendation of
// the stabilization window.
type autoscaler struct {
	mu      sync.Mutex
	history map[types.NamespacedName][]recommendation
}

type recommendation struct {
	at       time.Time
	replicas int32
}

// rawRecommendation is the count the lag alone asks for.
func rawRecommendation(in scaleInput) int32 {
	if in.lag == nil {
		// Lag unknown: hold what runs; start new pipelines at their minimum.
		if in.current >= 0 {
			return min(max(in.current, in.min), in.max)
		}
		return max(in.min, 1)
	}
	want := int64(0)
	if in.lag.total > 0 {
		want = (in.lag.total + in.target - 1) / in.target
	}
	if in.lag.partitions > 0 && want > int64(in.lag.partitions) {
		want = int64(in.lag.partitions)
	}
	return int32(min(max(want, int64(in.min)), int64(in.max)))
}

func (a *autoscaler) recommend(key types.NamespacedName, in scaleInput) int32 {
	raw := rawRecommendation(in)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.history == nil {
		a.history = map[types.NamespacedName][]recommendation{}
	}
	h := a.history[key]
	if len(h) == 0 && in.current >= 0 {
		// The count in force (after a restart, or set by hand) counts as a
		// recent recommendation, so that it is not dropped at once.
		h = append(h, recommendation{in.now, min(max(in.current, in.min), in.max)})
	}
	h = append(h, recommendation{in.now, raw})
	kept := h[:0]
	want := raw
	for _, rec := range h {
		if in.now.Sub(rec.at) <= in.window {
			kept = append(kept, rec)
			want = max(want, rec.replicas)
		}
	}
	a.history[key] = kept
	return min(max(want, in.min), in.max)
}

func (a *autoscaler) forget(key types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.history, key)
}
