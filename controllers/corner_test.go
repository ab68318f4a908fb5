package controllers

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream"
)

// workerAccepts runs a rendered configuration through what the worker does
// at start: config.Parse (defaults and validation), the upstream executor
// (headers, OAuth settings, credential files) and the Kafka client
// configuration. Secret file paths are moved into dir, with dummy files.
func workerAccepts(t *testing.T, rendered []byte, dir string) error {
	t.Helper()
	text := strings.ReplaceAll(string(rendered), secretsDir+"/", dir+"/secrets/")
	text = strings.ReplaceAll(text, configDir+"/", dir+"/config/")
	for _, f := range regexp.MustCompile(regexp.QuoteMeta(dir)+`/[^\s"']+`).FindAllString(text, -1) {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("value"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Parse([]byte(text))
	if err != nil {
		return err
	}
	e, err := upstream.New(upstream.Options{
		Upstream: c.Upstream, Retries: c.Retries, Timeouts: c.Timeouts, OAuth: c.OAuth,
		MaxInFlight: c.Concurrency.MaxInFlight, Log: logr.Discard(),
	})
	if err != nil {
		return err
	}
	e.Close()
	opts := kafkaconf.Options{Version: c.Kafka.Version, ClientID: c.Kafka.ClientID}
	if c.Kafka.SASL != nil {
		opts.SASLMechanism = c.Kafka.SASL.Mechanism
	}
	_, err = kafkaconf.New(opts, kafkaconf.Credentials{Username: "u", Password: "p"})
	return err
}

// TestCornerValuesAreAdmittedOnlyWhenTheWorkerAcceptsThem sends edge values
// to the real API server: each is either refused there with a message
// naming the field, or admitted, defaulted, rendered and accepted by the
// worker's own validation. Never admitted and then refused by the worker.
func TestCornerValuesAreAdmittedOnlyWhenTheWorkerAcceptsThem(t *testing.T) {
	requireEnvtest(t)
	ns := newNamespace(t)
	q := func(s string) *resource.Quantity { return ptr.To(resource.MustParse(s)) }
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	hdr := func(name, value string) v1.UpstreamHeader { return v1.UpstreamHeader{Name: name, Value: ptr.To(value)} }
	type spec = v1.PortalPipelineSpec
	cases := []struct {
		name   string
		mutate func(*spec)
		// refused is "" when the API server must admit the spec, else a
		// substring of its message.
		refused string
	}{
		{"drain 0s", func(s *spec) { s.Timeouts.Drain = d("0s") }, "spec.timeouts.drain"},
		{"drain 1s", func(s *spec) { s.Timeouts.Drain = d("1s") }, ""},
		{"byte budget below the default request cap", func(s *spec) { s.Concurrency.MaxBytes = q("8Mi") }, "concurrency.maxBytes must be at least upstream.maxRequestBytes"},
		{"byte budget equal to the request cap, both minimal", func(s *spec) {
			s.Concurrency.MaxBytes, s.Upstream.MaxRequestBytes = q("1Mi"), q("1Mi")
		}, ""},
		{"largest budget and caps", func(s *spec) {
			s.Concurrency.MaxBytes, s.Upstream.MaxRequestBytes, s.Upstream.MaxResponseBytes = q("64Gi"), q("1Gi"), q("1Gi")
		}, ""},
		{"byte budget below a raised request cap", func(s *spec) {
			s.Concurrency.MaxBytes, s.Upstream.MaxRequestBytes = q("600Mi"), q("1Gi")
		}, "concurrency.maxBytes must be at least upstream.maxRequestBytes"},
		{"Authorization header with oauth", func(s *spec) { s.Upstream.Headers = []v1.UpstreamHeader{hdr("authorization", "Bearer x")} }, "Authorization header conflicts with oauth"},
		{"Authorization header without oauth", func(s *spec) {
			s.OAuth = nil
			s.Upstream.Headers = []v1.UpstreamHeader{hdr("Authorization", "Bearer static")}
		}, ""},
		{"client_secret in endpointParams", func(s *spec) { s.OAuth.EndpointParams = map[string]string{"client_secret": "x"} }, "spec.oauth.endpointParams"},
		{"scope in endpointParams and scopes", func(s *spec) {
			s.OAuth.Scopes, s.OAuth.EndpointParams = []string{"a"}, map[string]string{"scope": "b"}
		}, "conflicts with oauth.scopes"},
		{"audience and resource params", func(s *spec) {
			s.OAuth.Audience, s.OAuth.EndpointParams = "orders", map[string]string{"resource": "r"}
		}, ""},
		{"http token URL", func(s *spec) { s.OAuth.TokenURL = "http://login.example.test/token" }, "spec.oauth.tokenURL"},
		{"http token URL allowed", func(s *spec) {
			s.OAuth.TokenURL, s.OAuth.AllowInsecureHTTP = "http://login.example.test/token", true
		}, ""},
		{"http base URL allowed", func(s *spec) {
			s.Upstream.BaseURL, s.Upstream.AllowInsecureHTTP = "http://orders.svc:8080/api", true
		}, ""},
		{"shortest session timeout, longest heartbeat", func(s *spec) {
			s.Kafka.SessionTimeout, s.Kafka.HeartbeatInterval = d("6s"), d("2s")
		}, ""},
		{"heartbeat over a third of the session", func(s *spec) {
			s.Kafka.SessionTimeout, s.Kafka.HeartbeatInterval = d("6s"), d("2001ms")
		}, "spec.kafka.heartbeatInterval"},
		{"session timeout below the broker minimum", func(s *spec) { s.Kafka.SessionTimeout = d("5s") }, "spec.kafka.sessionTimeout"},
		{"longest session timeout", func(s *spec) { s.Kafka.SessionTimeout, s.Kafka.HeartbeatInterval = d("5m"), d("100s") }, ""},
		{"eager rebalancing", func(s *spec) { s.Kafka.RebalanceProtocol = v1.RebalanceEager }, ""},
		{"shortest hand-over lease", func(s *spec) { s.Timeouts.HandoverLease = d("3s") }, ""},
		{"hand-over lease too short", func(s *spec) { s.Timeouts.HandoverLease = d("2s") }, "spec.timeouts.handoverLease"},
		{"no backoff", func(s *spec) { s.Retries.Backoff, s.Retries.MaxBackoff = d("0s"), d("0s") }, ""},
		{"Retry-After never honoured", func(s *spec) { s.Retries.MaxRetryAfter = d("0s") }, ""},
		{"one attempt, no statuses", func(s *spec) { s.Retries.Attempts, s.Retries.OnStatuses = 1, []int32{} }, ""},
		{"shortest and longest timeouts", func(s *spec) {
			s.Timeouts.Request, s.Timeouts.ChunkAssembly, s.Timeouts.Drain = d("1s"), d("24h"), d("2h")
		}, ""},
		{"smallest records", func(s *spec) { s.Kafka.MaxMessageBytes = 1024 }, ""},
		{"oldest Kafka protocol", func(s *spec) { s.Kafka.Version = "2.1.0" }, ""},
		{"Kafka protocol older than 2.1", func(s *spec) { s.Kafka.Version = "2.0.1" }, "spec.kafka.version"},
		{"half a call per second", func(s *spec) {
			s.Upstream.RateLimit = &v1.RateLimitSpec{RequestsPerSecond: resource.MustParse("500m")}
		}, ""},
		{"zero rate", func(s *spec) { s.Upstream.RateLimit = &v1.RateLimitSpec{RequestsPerSecond: resource.MustParse("0")} }, "spec.upstream.rateLimit.requestsPerSecond"},
		{"empty reply-topic prefix", func(s *spec) { s.Topics.AllowedReplyTopicPrefixes = []string{""} }, "spec.topics.allowedReplyTopicPrefixes[0]"},
		{"reply topics and prefixes", func(s *spec) {
			s.Topics.AllowedReplyTopics, s.Topics.AllowedReplyTopicPrefixes = []string{"other.replies"}, []string{"orders.replies."}
		}, ""},
		{"header values from a Secret and forwarded headers", func(s *spec) {
			s.Upstream.Headers = []v1.UpstreamHeader{hdr("X-Tenant", "acme"),
				{Name: "X-Api-Key", ValueFrom: &v1.HeaderValueSource{SecretKeyRef: v1.SecretKeyRef{Name: "api", Key: "key"}}}}
			s.Upstream.ForwardHeaders = []string{"X-Forwarded-For"}
		}, ""},
		{"header with both value and valueFrom", func(s *spec) {
			s.Upstream.Headers = []v1.UpstreamHeader{{Name: "X-A", Value: ptr.To("a"),
				ValueFrom: &v1.HeaderValueSource{SecretKeyRef: v1.SecretKeyRef{Name: "api", Key: "key"}}}}
		}, "exactly one of value and valueFrom"},
		{"same header twice", func(s *spec) { s.Upstream.Headers = []v1.UpstreamHeader{hdr("X-A", "1"), hdr("x-a", "2")} }, "unique"},
		{"SASL user name in the spec", func(s *spec) {
			s.Kafka.SASL = &v1.KafkaSASLSpec{Mechanism: v1.SASLSCRAMSHA512, Username: "orders-portal",
				PasswordSecretRef: v1.SecretKeyRef{Name: "orders-portal", Key: "password"}}
		}, ""},
		{"SASL user name twice", func(s *spec) {
			s.Kafka.SASL = &v1.KafkaSASLSpec{Mechanism: v1.SASLPlain, Username: "u",
				UsernameSecretRef: &v1.SecretKeyRef{Name: "k", Key: "u"}, PasswordSecretRef: v1.SecretKeyRef{Name: "k", Key: "p"}}
		}, "exactly one of username and usernameSecretRef"},
		{"most in-flight calls", func(s *spec) { s.Concurrency.MaxInFlight = 100000 }, ""},
		{"KEDA from zero", func(s *spec) {
			s.Scaling = v1.ScalingSpec{Mode: v1.ScalingKEDA, MinReplicas: ptr.To[int32](0), MaxReplicas: 1}
		}, ""},
	}
	admitted := 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := newPipeline(ns, "corner")
			p.Name = p.Name + "-" + strings.ToLower(string(rune('a'+i%26))) + strings.Repeat("x", i/26)
			tc.mutate(&p.Spec)
			err := k8sClient.Create(context.Background(), p)
			if tc.refused != "" {
				g.Expect(err).To(HaveOccurred(), "the API server admitted it")
				g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
				g.Expect(err.Error()).To(ContainSubstring(tc.refused))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			admitted++
			// What the API server stored, defaults filled in.
			stored := get(g, ns, p.Name, &v1.PortalPipeline{})
			rendered, err := RenderConfig(stored).Marshal()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(workerAccepts(t, rendered, t.TempDir())).To(Succeed(), "the worker refuses what the API server admitted:\n%s", rendered)
			g.Expect(k8sClient.Delete(context.Background(), stored)).To(Succeed())
		})
	}
	if admitted < 15 {
		t.Errorf("only %d admitted rows", admitted)
	}
}
