package controllers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/portal/config"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

// newNamespace creates a namespace that enforces the restricted Pod Security
// profile, so that worker pods the ReplicaSet controller creates must comply.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "t-" + rand.String(8),
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		},
	}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

func newPipeline(ns, name string) *kafkasendv1alpha1.PortalPipeline {
	return &kafkasendv1alpha1.PortalPipeline{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kafkasendv1alpha1.PortalPipelineSpec{
			Kafka: kafkasendv1alpha1.KafkaSpec{BootstrapServers: brokers},
			Topics: kafkasendv1alpha1.TopicsSpec{
				Requests: "requests-" + name, Replies: "replies-" + name,
			},
			Upstream: kafkasendv1alpha1.UpstreamSpec{BaseURL: "https://api.example.test/v1"},
			OAuth: &kafkasendv1alpha1.OAuthSpec{
				TokenURL:              "https://login.example.test/token",
				ClientIDSecretRef:     kafkasendv1alpha1.SecretKeyRef{Name: "oauth", Key: "client-id"},
				ClientSecretSecretRef: kafkasendv1alpha1.SecretKeyRef{Name: "oauth", Key: "client-secret"},
			},
			Scaling: kafkasendv1alpha1.ScalingSpec{MaxReplicas: 3},
		},
	}
}

func oauthSecret(ns string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "oauth"},
		Data: map[string][]byte{
			"client-id":     []byte("portal-client"),
			"client-secret": []byte("s3cr3t-value-never-in-configmaps"),
		},
	}
}

func get[T client.Object](g Gomega, ns, name string, obj T) T {
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

func readyCondition(g Gomega, ns, name string) *metav1.Condition {
	p := get(g, ns, name, &kafkasendv1alpha1.PortalPipeline{})
	c := meta.FindStatusCondition(p.Status.Conditions, kafkasendv1alpha1.ConditionReady)
	g.Expect(c).NotTo(BeNil(), "Ready condition")
	return c
}

func expectControllerOwner(g Gomega, obj client.Object, p *kafkasendv1alpha1.PortalPipeline) {
	refs := obj.GetOwnerReferences()
	g.Expect(refs).To(HaveLen(1), "%T owner references", obj)
	g.Expect(refs[0].UID).To(Equal(p.UID))
	g.Expect(refs[0].Kind).To(Equal("PortalPipeline"))
	g.Expect(ptr.Deref(refs[0].Controller, false)).To(BeTrue())
	g.Expect(ptr.Deref(refs[0].BlockOwnerDeletion, false)).To(BeTrue())
}

func TestPipelineLifecycle(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "orders")
	p.Spec.Replicas = ptr.To[int32](2)
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	name := "orders-portal"

	// Every child exists and is owned by the pipeline.
	g.Eventually(func(g Gomega) {
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.ServiceAccount{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}, &corev1.ConfigMap{}} {
			expectControllerOwner(g, get(g, ns, name, obj), p)
		}
	}, timeout, interval).Should(Succeed())

	// The rendered config is valid for the worker and holds no secret value.
	cm := get(g, ns, name, &corev1.ConfigMap{})
	rendered := cm.Data[ConfigFileName]
	g.Expect(rendered).NotTo(ContainSubstring("s3cr3t"))
	cfg, err := config.Parse([]byte(rendered))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.OAuth.ClientSecretFile).To(Equal("/etc/kafkasend/secrets/oauth/client-secret"))
	g.Expect(cfg.Kafka.ConsumerGroup).To(Equal("kafkasend." + ns + ".orders"))
	g.Expect(cfg.Timeouts.Request.Duration).To(Equal(15 * time.Minute))

	d := get(g, ns, name, &appsv1.Deployment{})
	g.Expect(*d.Spec.Replicas).To(Equal(int32(2)))
	g.Expect(*d.Spec.Template.Spec.TerminationGracePeriodSeconds).To(Equal(int64(975)), "request 15m + drain 60s + 15s")
	g.Expect(d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue()).To(BeZero(), "a rollout never stops a worker before its replacement is ready")
	g.Expect(d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue()).To(Equal(1))
	mem := d.Spec.Template.Spec.Containers[0].Resources.Limits.Memory()
	g.Expect(mem.Value()).To(Equal(int64(613<<20)), "512Mi byte budget + 64Mi response + 100 calls + base")
	g.Expect(d.Spec.Template.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "GOMEMLIMIT", Value: "551MiB"}))
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(workerImage))
	hash := d.Spec.Template.Annotations[ConfigHashAnnotation]
	g.Expect(hash).NotTo(BeEmpty())

	// The ReplicaSet controller creates the pods in a namespace that enforces
	// the restricted Pod Security profile: admission accepts them.
	g.Eventually(func(g Gomega) {
		var pods corev1.PodList
		g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(ns))).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(2))
		d := get(g, ns, name, &appsv1.Deployment{})
		g.Expect(deploymentStalled(d)).To(BeEmpty())
	}, timeout, interval).Should(Succeed())

	// Pods exist but none runs (envtest has no kubelet): not Ready, and says why.
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "orders")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(ReasonWorkersUnavailable))
		p := get(g, ns, "orders", &kafkasendv1alpha1.PortalPipeline{})
		g.Expect(p.Status.Replicas).To(Equal(int32(2)))
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
	}, timeout, interval).Should(Succeed())

	// A spec change updates the config and rolls the pod template.
	g.Eventually(func() error {
		cur := get(g, ns, "orders", &kafkasendv1alpha1.PortalPipeline{})
		cur.Spec.Concurrency.MaxInFlight = 500
		cur.Spec.Timeouts.Drain = &metav1.Duration{Duration: 2 * time.Minute}
		return k8sClient.Update(ctx, cur)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		cm := get(g, ns, name, &corev1.ConfigMap{})
		cfg, err := config.Parse([]byte(cm.Data[ConfigFileName]))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cfg.Concurrency.MaxInFlight).To(Equal(500))
		d := get(g, ns, name, &appsv1.Deployment{})
		g.Expect(d.Spec.Template.Annotations[ConfigHashAnnotation]).NotTo(Equal(hash))
		g.Expect(*d.Spec.Template.Spec.TerminationGracePeriodSeconds).To(Equal(int64(900 + 120 + 15)))
	}, timeout, interval).Should(Succeed())

	// Deleting the pipeline lets the garbage collector remove every child.
	g.Expect(k8sClient.Delete(ctx, get(g, ns, "orders", &kafkasendv1alpha1.PortalPipeline{}))).To(Succeed())
	g.Eventually(func(g Gomega) {
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.ServiceAccount{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}, &corev1.ConfigMap{}} {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T still there: %v", obj, err)
		}
	}, timeout, interval).Should(Succeed())
}

func TestMissingSecretAndRecovery(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	p := newPipeline(ns, "billing")
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())

	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "billing")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(ReasonSecretNotFound))
		g.Expect(c.Message).To(ContainSubstring(`"oauth" (spec.oauth.clientIDSecretRef)`))
		pp := get(g, ns, "billing", &kafkasendv1alpha1.PortalPipeline{})
		deg := meta.FindStatusCondition(pp.Status.Conditions, kafkasendv1alpha1.ConditionDegraded)
		g.Expect(deg).NotTo(BeNil())
		g.Expect(deg.Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "billing-portal"}, &appsv1.Deployment{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no Deployment while its Secret is missing")

	// A Warning event names the problem.
	g.Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		var reasons []string
		for _, e := range evs.Items {
			if e.Regarding.Name == "billing" && e.Type == corev1.EventTypeWarning {
				reasons = append(reasons, e.Reason)
			}
		}
		g.Expect(reasons).To(ContainElement(ReasonSecretNotFound))
	}, timeout, interval).Should(Succeed())

	// The Secret appears without the client-secret key.
	s := oauthSecret(ns)
	delete(s.Data, "client-secret")
	g.Expect(k8sClient.Create(ctx, s)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "billing")
		g.Expect(c.Reason).To(Equal(ReasonSecretKeyNotFound))
		g.Expect(c.Message).To(ContainSubstring(`key "client-secret" in Secret "oauth" (spec.oauth.clientSecretSecretRef)`))
	}, timeout, interval).Should(Succeed())

	// The key is added: the pipeline recovers and its workers are deployed.
	s.Data["client-secret"] = []byte("x")
	g.Expect(k8sClient.Update(ctx, s)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "billing")
		g.Expect(c.Reason).NotTo(BeElementOf(ReasonSecretNotFound, ReasonSecretKeyNotFound))
		get(g, ns, "billing-portal", &appsv1.Deployment{})
	}, timeout, interval).Should(Succeed())
}

func TestSecretRotationRollsOnlyWhatCannotReload(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "upstream-ca"}, Data: map[string][]byte{"ca.crt": []byte("one")}}
	g.Expect(k8sClient.Create(ctx, ca)).To(Succeed())
	p := newPipeline(ns, "rot")
	p.Spec.Upstream.CASecretRef = &kafkasendv1alpha1.SecretKeyRef{Name: "upstream-ca", Key: "ca.crt"}
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())

	hashNow := func(g Gomega) string {
		return get(g, ns, "rot-portal", &appsv1.Deployment{}).Spec.Template.Annotations[ConfigHashAnnotation]
	}
	var first string
	g.Eventually(func(g Gomega) { first = hashNow(g); g.Expect(first).NotTo(BeEmpty()) }, timeout, interval).Should(Succeed())

	// OAuth credentials are re-read by the worker: no restart.
	o := get(g, ns, "oauth", &corev1.Secret{})
	o.Data["client-secret"] = []byte("rotated")
	g.Expect(k8sClient.Update(ctx, o)).To(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(hashNow(g)).To(Equal(first)) }, 2*time.Second, interval).Should(Succeed())

	// A new upstream CA needs new pods.
	ca = get(g, ns, "upstream-ca", &corev1.Secret{})
	ca.Data["ca.crt"] = []byte("two")
	g.Expect(k8sClient.Update(ctx, ca)).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(hashNow(g)).NotTo(Equal(first)) }, timeout, interval).Should(Succeed())
}

func TestScaleSubresource(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "scaled")
	p.Spec.Scaling.Mode = kafkasendv1alpha1.ScalingManual
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	g.Eventually(func(g Gomega) { get(g, ns, "scaled-portal", &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())

	// What `kubectl scale portalpipeline/scaled --replicas=3` does.
	g.Eventually(func() error {
		scale := &autoscalingv1.Scale{}
		if err := k8sClient.SubResource("scale").Get(ctx, p, scale); err != nil {
			return err
		}
		scale.Spec.Replicas = 3
		return k8sClient.SubResource("scale").Update(ctx, p, client.WithSubResourceBody(scale))
	}, timeout, interval).Should(Succeed())

	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "scaled", &kafkasendv1alpha1.PortalPipeline{})
		g.Expect(cur.Spec.Replicas).To(HaveValue(Equal(int32(3))))
		d := get(g, ns, "scaled-portal", &appsv1.Deployment{})
		g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(3)))
		g.Expect(cur.Status.Replicas).To(Equal(int32(3)), "pods created by the ReplicaSet controller")
	}, timeout, interval).Should(Succeed())

	// The scale subresource reports the replicas and a selector that matches the pods.
	g.Eventually(func(g Gomega) {
		s := &autoscalingv1.Scale{}
		g.Expect(k8sClient.SubResource("scale").Get(ctx, p, s)).To(Succeed())
		g.Expect(s.Spec.Replicas).To(Equal(int32(3)))
		g.Expect(s.Status.Replicas).To(Equal(int32(3)))
		g.Expect(s.Status.Selector).To(ContainSubstring("app.kubernetes.io/instance=scaled"))
		var pods corev1.PodList
		sel, err := metav1.ParseToLabelSelector(s.Status.Selector)
		g.Expect(err).NotTo(HaveOccurred())
		ls, err := metav1.LabelSelectorAsSelector(sel)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: ls})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(3))
	}, timeout, interval).Should(Succeed())
}

func TestAutoscalesOnConsumerLag(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())

	topic := "lag-" + rand.String(6)
	admin, err := sarama.NewClusterAdmin(brokers, testSaramaConfig())
	g.Expect(err).NotTo(HaveOccurred())
	defer admin.Close()
	g.Expect(admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false)).To(Succeed())
	defer func() { _ = admin.DeleteTopic(topic) }()

	p := newPipeline(ns, "lagging")
	p.Spec.Topics.Requests = topic
	p.Spec.Scaling = kafkasendv1alpha1.ScalingSpec{
		MinReplicas: ptr.To[int32](0), MaxReplicas: 3, TargetBacklogPerReplica: ptr.To[int64](10),
		PollInterval:                 &metav1.Duration{Duration: time.Second},
		ScaleDownStabilizationWindow: &metav1.Duration{Duration: 0},
	}
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())

	// No messages: no lag, scaled to zero, and that counts as Ready.
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "lagging", &kafkasendv1alpha1.PortalPipeline{})
		g.Expect(cur.Status.ConsumerLag).To(HaveValue(BeZero()))
		g.Expect(cur.Status.Partitions).To(Equal(int32(4)))
		g.Expect(cur.Status.DesiredReplicas).To(BeZero())
		c := meta.FindStatusCondition(cur.Status.Conditions, kafkasendv1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(ReasonScaledToZero))
	}, timeout, interval).Should(Succeed())

	// 25 unconsumed jobs at 10 per replica: 3 replicas.
	produce(t, topic, 25)
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "lagging", &kafkasendv1alpha1.PortalPipeline{})
		g.Expect(cur.Status.ConsumerLag).To(HaveValue(Equal(int64(25))))
		g.Expect(cur.Status.Backlog).To(HaveValue(Equal(int64(25))), "nothing answered yet")
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(3)))
		g.Expect(cur.Spec.Replicas).To(HaveValue(Equal(int32(3))), "written through the scale subresource")
		d := get(g, ns, "lagging-portal", &appsv1.Deployment{})
		g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
	}, timeout, interval).Should(Succeed())

	// The group commits 20 of them: 5 left, 1 replica.
	commit(t, ConsumerGroup(p), topic, 20)
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "lagging", &kafkasendv1alpha1.PortalPipeline{})
		g.Expect(cur.Status.ConsumerLag).To(HaveValue(Equal(int64(5))))
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())
}

func TestUnreachableKafkaIsReported(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "offline")
	p.Spec.Kafka.BootstrapServers = []string{"127.0.0.1:1"}
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "offline", &kafkasendv1alpha1.PortalPipeline{})
		c := meta.FindStatusCondition(cur.Status.Conditions, kafkasendv1alpha1.ConditionDegraded)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(ReasonLagUnavailable))
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(1)), "holds the minimum while lag is unknown")
		k := meta.FindStatusCondition(cur.Status.Conditions, kafkasendv1alpha1.ConditionKafkaReachable)
		g.Expect(k).NotTo(BeNil())
		g.Expect(k.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(k.Message).To(ContainSubstring("127.0.0.1:1"))
	}, timeout, interval).Should(Succeed())
}

func testSaramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	return c
}

// produce writes n keyed messages spread over the topic's partitions.
func produce(t *testing.T, topic string, n int) {
	t.Helper()
	c := testSaramaConfig()
	c.Producer.Partitioner = sarama.NewRoundRobinPartitioner
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	for i := range n {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder("x")}); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
}

// commit consumes n messages of topic in a real consumer-group session of
// group and commits their offsets, as a worker would.
func commit(t *testing.T, group, topic string, n int) {
	t.Helper()
	c := testSaramaConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Session.Timeout = 6 * time.Second
	cg, err := sarama.NewConsumerGroup(brokers, group, c)
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	h := &countingHandler{left: n, done: cancel}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
			t.Fatalf("consuming: %v", err)
		}
	}
	if h.left > 0 {
		t.Fatalf("consumed only %d of %d messages", n-h.left, n)
	}
}

// countingHandler marks and commits messages until it has seen enough.
type countingHandler struct {
	mu   sync.Mutex
	left int
	done func()
}

func (h *countingHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *countingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *countingHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			if h.left > 0 {
				h.left--
				s.MarkMessage(m, "")
				if h.left == 0 {
					s.Commit()
					h.done()
				}
			}
			h.mu.Unlock()
		case <-s.Context().Done():
			return nil
		}
	}
}
