package controllers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/portal/config"
)

func basePipeline() *v1.PortalPipeline {
	return &v1.PortalPipeline{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", UID: "u-1"},
		Spec: v1.PortalPipelineSpec{
			Kafka:    v1.KafkaSpec{BootstrapServers: []string{"kafka:9093"}},
			Topics:   v1.TopicsSpec{Requests: "orders.requests", Replies: "orders.replies"},
			Upstream: v1.UpstreamSpec{BaseURL: "https://orders.example.test/v1"},
		},
	}
}

// crdDefaults reads every default of the generated CRD, by dotted path
// below spec.
func crdDefaults(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "config", "crd", "bases", "kafkasend.io_portalpipelines.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, s apiextensionsv1.JSONSchemaProps)
	walk = func(prefix string, s apiextensionsv1.JSONSchemaProps) {
		for name, sub := range s.Properties {
			path := strings.TrimPrefix(prefix+"."+name, ".")
			if sub.Default != nil {
				out[path] = string(sub.Default.Raw)
			}
			walk(path, sub)
		}
	}
	walk("", crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"])
	return out
}

// TestDefaultsAgree checks the three places defaults live: the CRD markers,
// the API package's constants (used by the operator) and the worker's
// config.Default().
func TestDefaultsAgree(t *testing.T) {
	g := NewWithT(t)
	crd := crdDefaults(t)
	dur := func(d time.Duration) string { return `"` + (&metav1.Duration{Duration: d}).Duration.String() + `"` }
	want := map[string]string{
		"kafka.maxMessageBytes":                 "921600",
		"kafka.sessionTimeout":                  `"10s"`,
		"kafka.heartbeatInterval":               `"500ms"`,
		"kafka.rebalanceProtocol":               `"` + string(v1.DefaultRebalanceProtocol) + `"`,
		"kafka.initialOffset":                   `"` + string(v1.DefaultInitialOffset) + `"`,
		"upstream.maxRequestBytes":              `"64Mi"`,
		"upstream.maxResponseBytes":             `"64Mi"`,
		"concurrency.maxInFlight":               "100",
		"concurrency.maxBytes":                  `"512Mi"`,
		"timeouts.request":                      `"15m"`,
		"timeouts.chunkAssembly":                `"2m"`,
		"timeouts.drain":                        `"60s"`,
		"timeouts.handoverLease":                `"15s"`,
		"retries.attempts":                      "3",
		"retries.backoff":                       `"200ms"`,
		"retries.maxBackoff":                    `"10s"`,
		"retries.maxRetryAfter":                 `"60s"`,
		"retries.onStatuses":                    "[429,502,503,504]",
		"retries.onConnectionErrors":            "true",
		"scaling.mode":                          `"Lag"`,
		"scaling.minReplicas":                   "1",
		"scaling.maxReplicas":                   "10",
		"scaling.activationBacklog":             "0",
		"scaling.pollInterval":                  `"30s"`,
		"scaling.scaleDownStabilizationWindow":  `"5m"`,
		"replicas":                              "1",
		"worker.logLevel":                       `"info"`,
		"concurrency":                           "{}",
		"timeouts":                              "{}",
		"retries":                               "{}",
		"scaling":                               "{}",
		"worker":                                "{}",
		"kafka.tls.clientCertSecretRef.certKey": `"tls.crt"`,
		"kafka.tls.clientCertSecretRef.keyKey":  `"tls.key"`,
		"oauth.authStyle":                       `"Auto"`,
		"upstream.http2":                        `"Auto"`,
	}
	g.Expect(crd).To(Equal(want), "CRD defaults changed: update api/v1alpha1/defaults.go and config.Default() too")

	// The constants, as the CRD spells them.
	q := func(v int64) string { return `"` + resource.NewQuantity(v, resource.BinarySI).String() + `"` }
	g.Expect(q(v1.DefaultMaxRequestBytes)).To(Equal(crd["upstream.maxRequestBytes"]))
	g.Expect(q(v1.DefaultMaxBytes)).To(Equal(crd["concurrency.maxBytes"]))
	for path, d := range map[string]time.Duration{
		"kafka.sessionTimeout": v1.DefaultSessionTimeout, "kafka.heartbeatInterval": v1.DefaultHeartbeatInterval,
		"timeouts.request": v1.DefaultRequestTimeout, "timeouts.chunkAssembly": v1.DefaultChunkAssembly,
		"timeouts.drain": v1.DefaultDrain, "timeouts.handoverLease": v1.DefaultHandoverLease,
		"retries.backoff": v1.DefaultBackoff, "retries.maxBackoff": v1.DefaultMaxBackoff,
		"retries.maxRetryAfter": v1.DefaultMaxRetryAfter, "scaling.pollInterval": v1.DefaultPollInterval,
		"scaling.scaleDownStabilizationWindow": v1.DefaultScaleDownWindow,
	} {
		parsed, err := time.ParseDuration(strings.Trim(crd[path], `"`))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(parsed).To(Equal(d), path+" "+dur(d))
	}

	// The worker's defaults equal the constants.
	c := config.Default()
	g.Expect(c.Kafka.MaxMessageBytes).To(BeEquivalentTo(v1.DefaultMaxMessageBytes))
	g.Expect(c.Kafka.SessionTimeout.Duration).To(Equal(v1.DefaultSessionTimeout))
	g.Expect(c.Kafka.HeartbeatInterval.Duration).To(Equal(v1.DefaultHeartbeatInterval))
	g.Expect(c.Kafka.RebalanceProtocol).To(Equal(strings.ToLower(string(v1.DefaultRebalanceProtocol))))
	g.Expect(c.Kafka.InitialOffset).To(Equal(strings.ToLower(string(v1.DefaultInitialOffset))))
	g.Expect(c.Upstream.MaxRequestBytes).To(Equal(v1.DefaultMaxRequestBytes))
	g.Expect(c.Upstream.MaxResponseBytes).To(Equal(v1.DefaultMaxResponseBytes))
	g.Expect(c.Concurrency.MaxInFlight).To(BeEquivalentTo(v1.DefaultMaxInFlight))
	g.Expect(c.Concurrency.MaxBytes).To(Equal(v1.DefaultMaxBytes))
	g.Expect(c.Timeouts.Request.Duration).To(Equal(v1.DefaultRequestTimeout))
	g.Expect(c.Timeouts.ChunkAssembly.Duration).To(Equal(v1.DefaultChunkAssembly))
	g.Expect(c.Timeouts.Drain.Duration).To(Equal(v1.DefaultDrain))
	g.Expect(c.Timeouts.HandoverLease.Duration).To(Equal(v1.DefaultHandoverLease))
	g.Expect(c.Retries.Attempts).To(BeEquivalentTo(v1.DefaultAttempts))
	g.Expect(c.Retries.Backoff.Duration).To(Equal(v1.DefaultBackoff))
	g.Expect(c.Retries.MaxBackoff.Duration).To(Equal(v1.DefaultMaxBackoff))
	g.Expect(c.Retries.MaxRetryAfter.Duration).To(Equal(v1.DefaultMaxRetryAfter))
	g.Expect(c.Retries.OnConnectionErrors).To(Equal(v1.DefaultOnConnectionErrors))
	want32 := v1.DefaultOnStatuses()
	g.Expect(c.Retries.OnStatuses).To(HaveLen(len(want32)))
	for i := range want32 {
		g.Expect(c.Retries.OnStatuses[i]).To(BeEquivalentTo(want32[i]))
	}

	// A spec without any default filled in renders the same as one with
	// the CRD's defaults.
	bare := basePipeline()
	filled := basePipeline()
	filled.Spec.Kafka.SessionTimeout = &metav1.Duration{Duration: 10 * time.Second}
	filled.Spec.Kafka.HeartbeatInterval = &metav1.Duration{Duration: 500 * time.Millisecond}
	filled.Spec.Kafka.RebalanceProtocol = v1.RebalanceCooperative
	filled.Spec.Kafka.MaxMessageBytes = 921600
	filled.Spec.Kafka.InitialOffset = v1.InitialOffsetEarliest
	filled.Spec.Upstream.HTTP2 = v1.UpstreamHTTP2Auto
	filled.Spec.Concurrency = v1.ConcurrencySpec{MaxInFlight: 100, MaxBytes: ptr.To(resource.MustParse("512Mi"))}
	filled.Spec.Timeouts = v1.TimeoutsSpec{
		Request: &metav1.Duration{Duration: 15 * time.Minute}, ChunkAssembly: &metav1.Duration{Duration: 2 * time.Minute},
		Drain: &metav1.Duration{Duration: time.Minute}, HandoverLease: &metav1.Duration{Duration: 15 * time.Second},
	}
	filled.Spec.Retries = v1.RetriesSpec{
		Attempts: 3, Backoff: &metav1.Duration{Duration: 200 * time.Millisecond}, MaxBackoff: &metav1.Duration{Duration: 10 * time.Second},
		MaxRetryAfter: &metav1.Duration{Duration: time.Minute}, OnStatuses: []int32{429, 502, 503, 504}, OnConnectionErrors: ptr.To(true),
	}
	a, err := RenderConfig(bare).Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	b, err := RenderConfig(filled).Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(a)).To(Equal(string(b)))
}

// TestStrimziShapedSecrets renders a pipeline whose Kafka credentials are
// Strimzi's: the cluster CA Secret (ca.crt), a KafkaUser Secret for mutual
// TLS (user.crt, user.key) and one for SCRAM (password; the user name is
// the KafkaUser's name).
func TestStrimziShapedSecrets(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	p.Spec.Kafka.TLS = &v1.KafkaTLSSpec{
		CASecretRef:         &v1.SecretKeyRef{Name: "my-cluster-cluster-ca-cert", Key: "ca.crt"},
		ClientCertSecretRef: &v1.TLSCertSecretRef{Name: "orders-portal-user", CertKey: "user.crt", KeyKey: "user.key"},
	}
	p.Spec.Kafka.SASL = &v1.KafkaSASLSpec{
		Mechanism: v1.SASLSCRAMSHA512, Username: "orders-portal",
		PasswordSecretRef: v1.SecretKeyRef{Name: "orders-portal", Key: "password"},
	}
	cfg := RenderConfig(p)
	g.Expect(cfg.Kafka.TLS.CAFile).To(Equal("/etc/kafkasend/secrets/kafka/ca.crt"))
	g.Expect(cfg.Kafka.TLS.CertFile).To(Equal("/etc/kafkasend/secrets/kafka/tls.crt"))
	g.Expect(cfg.Kafka.TLS.KeyFile).To(Equal("/etc/kafkasend/secrets/kafka/tls.key"))
	g.Expect(cfg.Kafka.SASL.PasswordFile).To(Equal("/etc/kafkasend/secrets/kafka/sasl-password"))
	g.Expect(cfg.Kafka.SASL.UsernameFile).To(Equal("/etc/kafkasend/config/kafka-sasl-username"), "the user name is not secret: mounted from the ConfigMap")
	g.Expect(cfg.Validate()).To(Succeed())

	cm := BuildConfigMap(p, []byte("x"))
	g.Expect(cm.Data).To(HaveKeyWithValue("kafka-sasl-username", "orders-portal"))

	d, err := BuildDeployment(p, "img", 1, "h")
	g.Expect(err).NotTo(HaveOccurred())
	var items []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			for _, it := range src.Secret.Items {
				items = append(items, *src.Secret.Name+"/"+*it.Key+" -> "+*it.Path)
			}
		}
	}
	g.Expect(items).To(ConsistOf(
		"my-cluster-cluster-ca-cert/ca.crt -> kafka/ca.crt",
		"orders-portal-user/user.crt -> kafka/tls.crt",
		"orders-portal-user/user.key -> kafka/tls.key",
		"orders-portal/password -> kafka/sasl-password",
		"orders-handover-key/key -> handover/key",
	))

	files := map[string][]byte{fileKafkaCA: []byte("CA"), fileKafkaCert: []byte("C"), fileKafkaKey: []byte("K"), fileSASLPassword: []byte("pw\n")}
	lt := lagTarget(p, files)
	g.Expect(lt.Credentials.Username).To(Equal("orders-portal"))
	g.Expect(lt.Credentials.Password).To(Equal("pw"))
	g.Expect(lt.Options.TLS).To(BeTrue())
	g.Expect(lt.Options.SASLMechanism).To(Equal("SCRAM-SHA-512"))

	so := BuildTriggerAuthentication(p)
	g.Expect(so).NotTo(BeNil())
	g.Expect(so.Object["spec"]).To(HaveKeyWithValue("secretTargetRef", ContainElements(
		map[string]any{"parameter": "ca", "name": "my-cluster-cluster-ca-cert", "key": "ca.crt"},
		map[string]any{"parameter": "password", "name": "orders-portal", "key": "password"},
	)))
}

func TestHeaderValuesFromSecrets(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	p.Spec.Upstream.Headers = []v1.UpstreamHeader{
		{Name: "X-Tenant", Value: ptr.To("acme")},
		{Name: "X-Api-Key", ValueFrom: &v1.HeaderValueSource{SecretKeyRef: v1.SecretKeyRef{Name: "api", Key: "key"}}},
	}
	cfg := RenderConfig(p)
	g.Expect(cfg.Upstream.Headers).To(Equal(map[string]string{"X-Tenant": "acme"}))
	g.Expect(cfg.Upstream.HeaderFiles).To(Equal(map[string]string{"X-Api-Key": "/etc/kafkasend/secrets/headers/0"}))
	g.Expect(cfg.Validate()).To(Succeed())
	var found bool
	for _, m := range secretMounts(p) {
		if m.ref.Secret == "api" {
			found = true
			g.Expect(m.restart).To(BeFalse(), "a rotated header value is re-read by the workers, not rolled")
			g.Expect(m.file).To(Equal("headers/0"))
		}
	}
	g.Expect(found).To(BeTrue())
	g.Expect(SecretNames(p)).To(Equal([]string{"api", HandoverKeySecret(p)}))
}

// TestUpstreamHTTP2 checks that spec.upstream.http2 reaches the worker's
// configuration in the worker's spelling, and that Auto (the default) is
// left out, so that pipelines that do not set it render as before.
func TestUpstreamHTTP2(t *testing.T) {
	for mode, want := range map[v1.UpstreamHTTP2]string{
		"": "", v1.UpstreamHTTP2Auto: "", v1.UpstreamHTTP2Always: config.HTTP2Always, v1.UpstreamHTTP2Never: config.HTTP2Never,
	} {
		g := NewWithT(t)
		p := basePipeline()
		p.Spec.Upstream.HTTP2 = mode
		cfg := RenderConfig(p)
		g.Expect(cfg.Upstream.HTTP2).To(Equal(want), string(mode))
		g.Expect(cfg.Validate()).To(Succeed())
	}
}

func TestTerminationGraceAndResources(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	g.Expect(TerminationGracePeriod(p)).To(Equal(int64(15*60 + 60 + 15)))
	p.Spec.Timeouts.Request = &metav1.Duration{Duration: 90 * time.Second}
	p.Spec.Timeouts.Drain = &metav1.Duration{Duration: 20 * time.Second}
	g.Expect(TerminationGracePeriod(p)).To(Equal(int64(125)))

	// Defaults: 512Mi held + 64Mi response + 100 calls x 48Ki + 32Mi.
	g.Expect(WorkerMemory(p)).To(Equal(int64(613 << 20)))
	p.Spec.Concurrency.MaxBytes = ptr.To(resource.MustParse("1Gi"))
	p.Spec.Concurrency.MaxInFlight = 1000
	p.Spec.Upstream.MaxResponseBytes = ptr.To(resource.MustParse("16Mi"))
	r := WorkerResources(p)
	g.Expect(r.Limits.Memory().Value()).To(Equal(int64((1024+16+47+32)<<20)), "1000 x 48Ki = 46.9Mi, rounded up")
	g.Expect(r.Requests.Memory().Value()).To(Equal(r.Limits.Memory().Value()))
	g.Expect(goMemLimit(r)).To(Equal("1007MiB"))
	p.Spec.Worker.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	g.Expect(goMemLimit(WorkerResources(p))).To(BeEmpty(), "no limit, no GOMEMLIMIT")
}

func TestBuildScaledObject(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	p.Spec.Scaling = v1.ScalingSpec{Mode: v1.ScalingKEDA, MinReplicas: ptr.To[int32](0), MaxReplicas: 6, ActivationBacklog: 3}
	p.Spec.Concurrency.MaxInFlight = 50
	so := BuildScaledObject(p)
	g.Expect(so.GetKind()).To(Equal("ScaledObject"))
	spec := so.Object["spec"].(map[string]any)
	g.Expect(spec["scaleTargetRef"]).To(Equal(map[string]any{"apiVersion": "kafkasend.io/v1alpha1", "kind": "PortalPipeline", "name": "orders"}))
	g.Expect(spec["minReplicaCount"]).To(BeEquivalentTo(0))
	g.Expect(spec["maxReplicaCount"]).To(BeEquivalentTo(6))
	trig := spec["triggers"].([]any)[0].(map[string]any)
	g.Expect(trig["type"]).To(Equal("kafka"))
	g.Expect(trig["metadata"]).To(Equal(map[string]any{
		"bootstrapServers": "kafka:9093", "consumerGroup": "kafkasend.shop.orders", "topic": "orders.requests",
		"lagThreshold": "50", "activationLagThreshold": "3", "offsetResetPolicy": "earliest", "allowIdleConsumers": "false",
	}))
	g.Expect(trig).NotTo(HaveKey("authenticationRef"))
	g.Expect(BuildTriggerAuthentication(p)).To(BeNil())
}

func TestPodFailure(t *testing.T) {
	g := NewWithT(t)
	pod := func(name string, cs corev1.ContainerStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{cs}}}
	}
	crash := pod("a", corev1.ContainerStatus{
		RestartCount: 4,
		State:        corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", Message: "portal: kafka.brokers: at least one broker is required"}},
	})
	pull := pod("b", corev1.ContainerStatus{Image: "kafkasend/portal:nope",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}}})
	oom := pod("c", corev1.ContainerStatus{RestartCount: 1,
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}})
	healthy := pod("d", corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})

	g.Expect(podFailure([]corev1.Pod{healthy})).To(BeNil())
	p := podFailure([]corev1.Pod{healthy, crash})
	g.Expect(p.Reason).To(Equal(v1.ReasonCrashLoopBackOff))
	g.Expect(p.Message).To(ContainSubstring("at least one broker is required"))
	g.Expect(podFailure([]corev1.Pod{pull}).Reason).To(Equal(v1.ReasonImagePullBackOff))
	g.Expect(podFailure([]corev1.Pod{pull, crash, oom}).Reason).To(Equal(v1.ReasonOOMKilled))
}

func TestParseInFlight(t *testing.T) {
	g := NewWithT(t)
	n, err := parseInFlight(strings.NewReader("# HELP kafkasend_portal_in_flight_jobs x\n# TYPE kafkasend_portal_in_flight_jobs gauge\nkafkasend_portal_in_flight_jobs 7\nother 3\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n).To(Equal(int64(7)))
	_, err = parseInFlight(strings.NewReader("other 3\n"))
	g.Expect(err).To(HaveOccurred())
	_, err = parseInFlight(strings.NewReader("not a metrics page {{{"))
	g.Expect(err).To(HaveOccurred())
}

func resourcePtr(s string) *resource.Quantity { return ptr.To(resource.MustParse(s)) }
