package v1alpha1

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of the spec. The CRD's +kubebuilder:default markers carry the
// same values (markers cannot name constants); TestDefaultsAgree checks the
// generated CRD, these constants and the worker's config.Default() against
// each other, so the API server, the operator and the worker agree.
const (
	DefaultMaxMessageBytes    int32 = 921600
	DefaultSessionTimeout           = 10 * time.Second
	DefaultHeartbeatInterval        = 500 * time.Millisecond
	DefaultRebalanceProtocol        = RebalanceCooperative
	DefaultInitialOffset            = InitialOffsetEarliest
	DefaultMaxRequestBytes    int64 = 64 << 20
	DefaultMaxResponseBytes   int64 = 64 << 20
	DefaultMaxInFlight        int32 = 100
	DefaultMaxBytes           int64 = 512 << 20
	DefaultRequestTimeout           = 15 * time.Minute
	DefaultChunkAssembly            = 2 * time.Minute
	DefaultDrain                    = 60 * time.Second
	DefaultHandoverLease            = 15 * time.Second
	DefaultAttempts           int32 = 3
	DefaultBackoff                  = 200 * time.Millisecond
	DefaultMaxBackoff               = 10 * time.Second
	DefaultMaxRetryAfter            = 60 * time.Second
	DefaultOnConnectionErrors       = true
	DefaultScalingMode              = ScalingLag
	DefaultMinReplicas        int32 = 1
	DefaultMaxReplicas        int32 = 10
	DefaultPollInterval             = 30 * time.Second
	DefaultScaleDownWindow          = 5 * time.Minute
	DefaultReplicas           int32 = 1
	DefaultLogLevel                 = "info"
	// DefaultConsumerGroupFormat is filled with the namespace and name.
	DefaultConsumerGroupFormat = "kafkasend.%s.%s"
)

// DefaultOnStatuses are the upstream statuses retried by default.
func DefaultOnStatuses() []int32 { return []int32{429, 502, 503, 504} }

// Effective values: what the worker runs with, whether or not the API
// server filled the default in (objects decoded outside the API server, or
// stored before a default existed, may lack it).

// EffectiveConsumerGroup is the consumer group of the workers.
func (p *PortalPipeline) EffectiveConsumerGroup() string {
	if p.Spec.Kafka.ConsumerGroup != "" {
		return p.Spec.Kafka.ConsumerGroup
	}
	return fmt.Sprintf(DefaultConsumerGroupFormat, p.Namespace, p.Name)
}

// EffectiveMode is the scaling mode.
func (s *ScalingSpec) EffectiveMode() ScalingMode {
	if s.Mode == "" {
		return DefaultScalingMode
	}
	return s.Mode
}

// EffectiveMinReplicas is scaling.minReplicas or its default.
func (s *ScalingSpec) EffectiveMinReplicas() int32 {
	if s.MinReplicas == nil {
		return DefaultMinReplicas
	}
	return *s.MinReplicas
}

// EffectiveMaxReplicas is scaling.maxReplicas or its default (never below
// the minimum).
func (s *ScalingSpec) EffectiveMaxReplicas() int32 {
	if s.MaxReplicas <= 0 {
		return max(DefaultMaxReplicas, s.EffectiveMinReplicas())
	}
	return s.MaxReplicas
}

// EffectiveMaxInFlight is concurrency.maxInFlight or its default.
func (c *ConcurrencySpec) EffectiveMaxInFlight() int32 {
	if c.MaxInFlight <= 0 {
		return DefaultMaxInFlight
	}
	return c.MaxInFlight
}

// EffectiveMaxBytes is concurrency.maxBytes or its default, in bytes.
func (c *ConcurrencySpec) EffectiveMaxBytes() int64 { return QuantityOr(c.MaxBytes, DefaultMaxBytes) }

// EffectiveTargetBacklog is scaling.targetBacklogPerReplica, defaulting to
// a replica's capacity (concurrency.maxInFlight).
func (p *PortalPipeline) EffectiveTargetBacklog() int64 {
	if t := p.Spec.Scaling.TargetBacklogPerReplica; t != nil && *t > 0 {
		return *t
	}
	return int64(p.Spec.Concurrency.EffectiveMaxInFlight())
}

// DurationOr is d or def when d is unset.
func DurationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// QuantityOr is q in units, or def when q is unset.
func QuantityOr(q *resource.Quantity, def int64) int64 {
	if q == nil {
		return def
	}
	return q.Value()
}
