package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// scaleInput is what one autoscaling decision looks at.
type scaleInput struct {
	now time.Time
	// current is spec.replicas, -1 when unset.
	current int32
	// backlog is the jobs waiting or in flight; partitions the topic's
	// partition count; known is false when no measurement exists.
	known      bool
	backlog    int64
	partitions int32
	min, max   int32
	// target is the backlog one replica carries.
	target int64
	// activation is the backlog above which a pipeline at zero starts.
	activation int64
	window     time.Duration
}

// rawRecommendation is the count the backlog alone asks for:
// ceil(backlog / target), within [min, max] and at most one replica per
// partition; zero (when min allows it) only when nothing waits, and a
// pipeline at zero starts only above the activation threshold.
func rawRecommendation(in scaleInput) int32 {
	if !in.known {
		// Backlog unknown: hold what runs; start new pipelines at their minimum.
		if in.current >= 0 {
			return min(max(in.current, in.min), in.max)
		}
		return max(in.min, 1)
	}
	want := int64(0)
	if in.backlog > 0 {
		want = (in.backlog + in.target - 1) / in.target
	}
	if in.current <= 0 && in.backlog <= in.activation {
		want = 0
	}
	if in.partitions > 0 && want > int64(in.partitions) {
		want = int64(in.partitions)
	}
	return int32(min(max(want, int64(in.min)), int64(in.max)))
}

// autoscaler turns the backlog into a replica count, raised at once and
// lowered only to the highest recommendation of the stabilization window.
type autoscaler struct {
	mu      sync.Mutex
	history map[types.NamespacedName][]recommendation
}

type recommendation struct {
	at       time.Time
	replicas int32
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

// scaleInputFor builds the autoscaler's input from the spec and the last
// backlog reading.
func scaleInputFor(p *v1.PortalPipeline, r *lagReading, now time.Time) scaleInput {
	in := scaleInput{
		now: now, current: -1,
		min: p.Spec.Scaling.EffectiveMinReplicas(), max: p.Spec.Scaling.EffectiveMaxReplicas(),
		target:     p.EffectiveTargetBacklog(),
		activation: p.Spec.Scaling.ActivationBacklog,
		window:     v1.DurationOr(p.Spec.Scaling.ScaleDownStabilizationWindow, v1.DefaultScaleDownWindow),
	}
	if p.Spec.Replicas != nil {
		in.current = *p.Spec.Replicas
	}
	if r != nil && r.err == nil {
		in.known, in.backlog, in.partitions = true, r.res.Backlog, r.res.Partitions
	}
	return in
}
