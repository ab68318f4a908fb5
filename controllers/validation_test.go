package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// TestInvalidSpecsAreRejected sends invalid pipelines to the real API server
// and checks that each is refused with a message naming the field.
func TestInvalidSpecsAreRejected(t *testing.T) {
	requireEnvtest(t)
	ns := newNamespace(t)
	q := resource.MustParse
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	cases := []struct {
		name   string
		mutate func(*kafkasendv1alpha1.PortalPipelineSpec)
		// want are substrings the API server's message must contain.
		want []string
	}{
		{"no bootstrap servers", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Kafka.BootstrapServers = nil },
			[]string{"spec.kafka.bootstrapServers"}},
		{"bootstrap server without port", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Kafka.BootstrapServers = []string{"kafka.example"} },
			[]string{"spec.kafka.bootstrapServers[0]", "should match"}},
		{"plain http upstream", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Upstream.BaseURL = "http://api.example.test" },
			[]string{"spec.upstream.baseURL", "must use https, or http with allowInsecureHTTP: true"}},
		{"relative upstream URL", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Upstream.BaseURL = "/v1/things" },
			[]string{"spec.upstream.baseURL", "absolute URL with a host"}},
		{"upstream URL with credentials", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Upstream.BaseURL = "https://user:pw@api.example.test"
		}, []string{"spec.upstream.baseURL", "must not carry user info"}},
		{"unknown upstream HTTP/2 mode", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Upstream.HTTP2 = "H2C" },
			[]string{"spec.upstream.http2", "Unsupported value"}},
		{"ftp token URL", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.OAuth.TokenURL = "ftp://login.example.test/token" },
			[]string{"spec.oauth.tokenURL", "absolute http(s) URL"}},
		{"max below min replicas", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Scaling = kafkasendv1alpha1.ScalingSpec{MinReplicas: ptr.To[int32](5), MaxReplicas: 2}
		}, []string{"spec.scaling.maxReplicas", "at least scaling.minReplicas"}},
		{"zero in-flight limit", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Concurrency.MaxInFlight = -1 },
			[]string{"spec.concurrency.maxInFlight", "greater than or equal to 1"}},
		{"tiny byte budget", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Concurrency.MaxBytes = ptr.To(q("100Ki")) },
			[]string{"spec.concurrency.maxBytes", "between 1Mi and 64Gi"}},
		{"zero request timeout", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Timeouts.Request = &metav1.Duration{Duration: 0}
		}, []string{"spec.timeouts.request", "between 1s and 24h"}},
		{"request timeout too long", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Timeouts.Request = d("48h") },
			[]string{"spec.timeouts.request", "between 1s and 24h"}},
		{"max backoff below backoff", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Retries.Backoff, s.Retries.MaxBackoff = d("5s"), d("1s")
		}, []string{"spec.retries.maxBackoff", "at least retries.backoff"}},
		{"retry on a 2xx status", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Retries.OnStatuses = []int32{200} },
			[]string{"spec.retries.onStatuses[0]", "greater than or equal to 400"}},
		{"too many attempts", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Retries.Attempts = 50 },
			[]string{"spec.retries.attempts", "less than or equal to 10"}},
		{"replies equal requests", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Topics.Replies = s.Topics.Requests },
			[]string{"spec.topics", "replies must differ from topics.requests"}},
		{"topic with a slash", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Topics.Requests = "a/b" },
			[]string{"spec.topics.requests", "should match"}},
		{"secret ref without key", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.OAuth.ClientSecretSecretRef.Key = "" },
			[]string{"spec.oauth.clientSecretSecretRef.key"}},
		{"unknown SASL mechanism", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Kafka.SASL = &kafkasendv1alpha1.KafkaSASLSpec{
				Mechanism:         "GSSAPI",
				UsernameSecretRef: &kafkasendv1alpha1.SecretKeyRef{Name: "k", Key: "u"},
				PasswordSecretRef: kafkasendv1alpha1.SecretKeyRef{Name: "k", Key: "p"},
			}
		}, []string{"spec.kafka.sasl.mechanism", "Unsupported value"}},
		{"static Host header", func(s *kafkasendv1alpha1.PortalPipelineSpec) {
			s.Upstream.Headers = []kafkasendv1alpha1.UpstreamHeader{{Name: "Host", Value: ptr.To("evil.test")}}
		},
			[]string{"spec.upstream.headers[0].name", "set by the portal"}},
		{"request body cap over 1Gi", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Upstream.MaxRequestBytes = ptr.To(q("2Gi")) },
			[]string{"spec.upstream.maxRequestBytes", "at most 1Gi"}},
		{"negative replicas", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Replicas = ptr.To[int32](-1) },
			[]string{"spec.replicas", "greater than or equal to 0"}},
		{"invalid initial offset", func(s *kafkasendv1alpha1.PortalPipelineSpec) { s.Kafka.InitialOffset = "Middle" },
			[]string{"spec.kafka.initialOffset", "Unsupported value"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := newPipeline(ns, "invalid")
			p.Name = p.Name + "-" + string(rune('a'+i))
			tc.mutate(&p.Spec)
			err := k8sClient.Create(context.Background(), p)
			g.Expect(err).To(HaveOccurred(), "the API server accepted it")
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			for _, w := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}

	// And the valid base is accepted, with defaults filled in.
	g := NewWithT(t)
	p := newPipeline(ns, "valid")
	g.Expect(k8sClient.Create(context.Background(), p)).To(Succeed())
	g.Expect(p.Spec.Concurrency.MaxInFlight).To(Equal(int32(100)))
	g.Expect(p.Spec.Timeouts.Request.Duration).To(Equal(15 * time.Minute))
	g.Expect(p.Spec.Retries.OnStatuses).To(Equal([]int32{429, 502, 503, 504}))
	g.Expect(*p.Spec.Scaling.MinReplicas).To(Equal(int32(1)))
	g.Expect(p.Spec.Kafka.InitialOffset).To(Equal(kafkasendv1alpha1.InitialOffsetEarliest))
}
