package controllers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/portal/offsets"
)

func createTopic(t *testing.T, partitions int32) string {
	t.Helper()
	topic := "t-" + rand.String(8)
	admin, err := sarama.NewClusterAdmin(brokers, testSaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a, err := sarama.NewClusterAdmin(brokers, testSaramaConfig()); err == nil {
			_ = a.DeleteTopic(topic)
			a.Close()
		}
	})
	return topic
}

// produceTo writes n records to one partition, fast.
func produceTo(t *testing.T, topic string, partition int32, n int) {
	t.Helper()
	c := testSaramaConfig()
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Return.Errors = true
	c.Producer.Flush.Messages = 500
	c.Producer.Flush.Frequency = 10 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			select {
			case <-p.Successes():
			case e := <-p.Errors():
				failed = e
			}
		}
	}()
	for i := range n {
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.StringEncoder(strconv.Itoa(i)), Value: sarama.StringEncoder("x")}
	}
	wg.Wait()
	if err := p.Close(); err != nil || failed != nil {
		t.Fatalf("producing: %v %v", err, failed)
	}
}

// commitWithMetadata commits, as a worker of group would, each partition's
// offset with its commit metadata.
func commitWithMetadata(t *testing.T, group, topic string, marks map[int32]offsets.Commit, at map[int32]int64) {
	t.Helper()
	c := testSaramaConfig()
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Session.Timeout = 6 * time.Second
	cg, err := sarama.NewConsumerGroup(brokers, group, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	h := &metadataCommitter{topic: topic, marks: marks, at: at, done: cancel}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
	}
	if !h.committed {
		t.Fatal("not committed")
	}
}

type metadataCommitter struct {
	topic     string
	marks     map[int32]offsets.Commit
	at        map[int32]int64
	done      func()
	committed bool
}

func (h *metadataCommitter) Setup(s sarama.ConsumerGroupSession) error {
	for p, off := range h.at {
		md, _ := offsets.EncodeCommit(off, h.marks[p])
		s.MarkOffset(h.topic, p, off, md)
	}
	s.Commit()
	h.committed = true
	h.done()
	return nil
}
func (h *metadataCommitter) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *metadataCommitter) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

func gauge(g Gomega, name string, p *v1.PortalPipeline) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == p.Namespace && labels["name"] == p.Name {
				return m.GetGauge().GetValue()
			}
		}
	}
	g.Expect(name).To(BeEmpty(), "no series for the pipeline")
	return 0
}

// TestScalesOnBacklogNotOffsets: one long call at the bottom of a
// partition with 20,000 answered jobs behind it is a backlog of 1 and no
// reason to scale; 2,000 jobs queued behind it scale to the partition cap
// within one poll interval.
func TestScalesOnBacklogNotOffsets(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	topic := createTopic(t, 4)

	// Offset 0 is a 10-minute call still running; 1..20000 are answered.
	produceTo(t, topic, 0, 20_001)
	p := newPipeline(ns, "backlog")
	p.Spec.Topics.Requests = topic
	poll := 3 * time.Second
	p.Spec.Scaling = v1.ScalingSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 10,
		PollInterval: &metav1.Duration{Duration: poll}, ScaleDownStabilizationWindow: &metav1.Duration{}}
	commitWithMetadata(t, ConsumerGroup(p), topic,
		map[int32]offsets.Commit{0: {Done: []offsets.Range{{First: 1, Last: 20_000}}}}, map[int32]int64{0: 0})
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())

	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "backlog", &v1.PortalPipeline{})
		g.Expect(cur.Status.ConsumerLag).To(HaveValue(Equal(int64(20_001))), "offset lag counts the answered jobs")
		g.Expect(cur.Status.Backlog).To(HaveValue(Equal(int64(1))), "but only the long call waits")
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(1)))
		g.Expect(gauge(g, "kafkasend_pipeline_backlog_jobs", cur)).To(Equal(1.0))
		g.Expect(gauge(g, "kafkasend_pipeline_lag_records", cur)).To(Equal(20_001.0))
		g.Expect(gauge(g, "kafkasend_pipeline_desired_replicas", cur)).To(Equal(1.0))
		k := meta.FindStatusCondition(cur.Status.Conditions, v1.ConditionKafkaReachable)
		g.Expect(k).NotTo(BeNil())
		g.Expect(k.Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, "backlog", &v1.PortalPipeline{}).Spec.Replicas).To(HaveValue(Equal(int32(1))), "no scale-up")
	}, 2*poll, interval).Should(Succeed())

	// 2,000 jobs queued behind the saturated worker, over every partition.
	for part := range int32(4) {
		produceTo(t, topic, part, 500)
	}
	queued := time.Now()
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "backlog", &v1.PortalPipeline{})
		g.Expect(cur.Status.Backlog).To(HaveValue(Equal(int64(2_001))))
		g.Expect(cur.Spec.Replicas).To(HaveValue(Equal(int32(4))), "the partition cap")
		g.Expect(*get(g, ns, "backlog-portal", &appsv1.Deployment{}).Spec.Replicas).To(Equal(int32(4)))
	}, timeout, 50*time.Millisecond).Should(Succeed())
	took := time.Since(queued)
	t.Logf("scaled to the partition cap %v after the jobs were queued (poll interval %v)", took.Round(time.Millisecond), poll)
	g.Expect(took).To(BeNumerically("<", poll+2*time.Second), "within one poll interval (and the time to apply it)")
}

// TestManualModeKeepsTheUsersCount: in Manual mode `kubectl scale` sticks
// across reconciles, whatever the backlog.
func TestManualModeKeepsTheUsersCount(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	topic := createTopic(t, 4)
	produceTo(t, topic, 0, 1_000)
	p := newPipeline(ns, "manual")
	p.Spec.Topics.Requests = topic
	p.Spec.Scaling = v1.ScalingSpec{Mode: v1.ScalingManual, MaxReplicas: 4, PollInterval: &metav1.Duration{Duration: time.Second}}
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ns, "manual", &v1.PortalPipeline{}).Status.Backlog).To(HaveValue(Equal(int64(1_000))))
	}, timeout, interval).Should(Succeed())

	g.Eventually(func() error {
		s := &autoscalingv1.Scale{}
		if err := k8sClient.SubResource("scale").Get(ctx, p, s); err != nil {
			return err
		}
		s.Spec.Replicas = 2
		return k8sClient.SubResource("scale").Update(ctx, p, client.WithSubResourceBody(s))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(*get(g, ns, "manual-portal", &appsv1.Deployment{}).Spec.Replicas).To(Equal(int32(2)))
	}, timeout, interval).Should(Succeed())
	// The pipeline is reconciled every poll interval (1s): 10 and more
	// reconciles leave the count alone.
	first := get(g, ns, "manual", &v1.PortalPipeline{}).Status.LagTime
	g.Consistently(func(g Gomega) {
		cur := get(g, ns, "manual", &v1.PortalPipeline{})
		g.Expect(cur.Spec.Replicas).To(HaveValue(Equal(int32(2))))
		g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(2)))
		g.Expect(*get(g, ns, "manual-portal", &appsv1.Deployment{}).Spec.Replicas).To(Equal(int32(2)))
	}, 11*time.Second, 250*time.Millisecond).Should(Succeed())
	g.Expect(get(g, ns, "manual", &v1.PortalPipeline{}).Status.LagTime).NotTo(Equal(first), "measured (and reconciled) meanwhile")
}

// TestKEDAMode: without KEDA a condition says so; once KEDA's CRDs exist
// the operator renders a ScaledObject on the pipeline's scale subresource
// with the Kafka trigger of the spec.
func TestKEDAMode(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "keda")
	p.Spec.Scaling = v1.ScalingSpec{Mode: v1.ScalingKEDA, MinReplicas: ptr.To[int32](0), MaxReplicas: 5, ActivationBacklog: 2}
	p.Spec.Concurrency.MaxInFlight = 40
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "keda", &v1.PortalPipeline{})
		c := meta.FindStatusCondition(cur.Status.Conditions, v1.ConditionDegraded)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(v1.ReasonKEDANotInstalled))
		get(g, ns, "keda-portal", &appsv1.Deployment{})
	}, timeout, interval).Should(Succeed())

	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{filepath.Join("testdata", "crds")}})
	g.Expect(err).NotTo(HaveOccurred())
	// Any change of the pipeline reconciles it again.
	g.Eventually(func() error {
		cur := get(g, ns, "keda", &v1.PortalPipeline{})
		cur.Spec.Scaling.MaxReplicas = 6
		return k8sClient.Update(ctx, cur)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		so := &unstructured.Unstructured{}
		so.SetGroupVersionKind(scaledObjectGVK)
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keda-portal"}, so)).To(Succeed())
		g.Expect(so.GetOwnerReferences()).To(HaveLen(1))
		target, _, _ := unstructured.NestedStringMap(so.Object, "spec", "scaleTargetRef")
		g.Expect(target).To(Equal(map[string]string{"apiVersion": "kafkasend.io/v1alpha1", "kind": "PortalPipeline", "name": "keda"}))
		maxR, _, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount")
		g.Expect(maxR).To(Equal(int64(6)))
		triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
		g.Expect(triggers).To(HaveLen(1))
		md := triggers[0].(map[string]any)["metadata"].(map[string]any)
		g.Expect(md).To(HaveKeyWithValue("topic", "requests-keda"))
		g.Expect(md).To(HaveKeyWithValue("consumerGroup", "kafkasend."+ns+".keda"))
		g.Expect(md).To(HaveKeyWithValue("lagThreshold", "40"))
		g.Expect(md).To(HaveKeyWithValue("activationLagThreshold", "2"))
		cur := get(g, ns, "keda", &v1.PortalPipeline{})
		c := meta.FindStatusCondition(cur.Status.Conditions, v1.ConditionDegraded)
		g.Expect(c.Reason).NotTo(Equal(v1.ReasonKEDANotInstalled))
	}, timeout, interval).Should(Succeed())

	// KEDA sets the count through the scale subresource; the operator keeps it.
	g.Eventually(func() error {
		s := &autoscalingv1.Scale{}
		if err := k8sClient.SubResource("scale").Get(ctx, p, s); err != nil {
			return err
		}
		s.Spec.Replicas = 3
		return k8sClient.SubResource("scale").Update(ctx, p, client.WithSubResourceBody(s))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(*get(g, ns, "keda-portal", &appsv1.Deployment{}).Spec.Replicas).To(Equal(int32(3)))
	}, timeout, interval).Should(Succeed())

	// Leaving KEDA mode removes the ScaledObject.
	g.Eventually(func() error {
		cur := get(g, ns, "keda", &v1.PortalPipeline{})
		cur.Spec.Scaling.Mode = v1.ScalingManual
		return k8sClient.Update(ctx, cur)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		so := &unstructured.Unstructured{}
		so.SetGroupVersionKind(scaledObjectGVK)
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keda-portal"}, so)
		g.Expect(client.IgnoreNotFound(err)).To(Succeed())
		g.Expect(err).To(HaveOccurred())
	}, timeout, interval).Should(Succeed())
}

// blackhole accepts TCP connections and never answers: a Kafka broker that
// hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// TestHangingKafkaDoesNotDelayOtherPipelines: a pipeline whose brokers
// accept connections and never answer does not slow another pipeline's
// reconcile (by its Kafka timeouts).
func TestHangingKafkaDoesNotDelayOtherPipelines(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())

	timeToDeployment := func(name string) time.Duration {
		start := time.Now()
		p := newPipeline(ns, name)
		p.Spec.Scaling.PollInterval = &metav1.Duration{Duration: time.Second}
		g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
		g.Eventually(func(g Gomega) {
			cur := get(g, ns, name, &v1.PortalPipeline{})
			g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
			get(g, ns, name+"-portal", &appsv1.Deployment{})
		}, timeout, 20*time.Millisecond).Should(Succeed())
		return time.Since(start)
	}
	baseline := timeToDeployment("alone")

	// Several hanging pipelines, polled every second.
	hang := blackhole(t)
	for i := range 3 {
		p := newPipeline(ns, fmt.Sprintf("hanging-%d", i))
		p.Spec.Kafka.BootstrapServers = []string{hang}
		p.Spec.Scaling.PollInterval = &metav1.Duration{Duration: time.Second}
		g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		get(g, ns, "hanging-2-portal", &appsv1.Deployment{})
	}, timeout, interval).Should(Succeed())
	time.Sleep(2 * time.Second) // the polls of the hanging pipelines are under way
	with := timeToDeployment("beside")
	t.Logf("time to reconcile a new pipeline: %v alone, %v beside 3 pipelines with a hanging broker", baseline.Round(time.Millisecond), with.Round(time.Millisecond))
	// On the reconcile path a hanging broker would cost its dial or read
	// timeout (tens of seconds); 5 s leaves room for a loaded machine.
	g.Expect(with - baseline).To(BeNumerically("<", 5*time.Second))

	g.Eventually(func(g Gomega) {
		cur := get(g, ns, "hanging-0", &v1.PortalPipeline{})
		c := meta.FindStatusCondition(cur.Status.Conditions, v1.ConditionKafkaReachable)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	}, timeout, interval).Should(Succeed())
}

// TestOnlyReferencedSecretsAreRead: the operator reads the Secrets a
// pipeline references, in its namespace, and no other.
func TestOnlyReferencedSecretsAreRead(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns, other := newNamespace(t), newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	g.Expect(k8sClient.Create(ctx, oauthSecret(other))).To(Succeed())
	// kubectl apply keeps a copy of the data in an annotation: the
	// operator's cache must not hold it.
	unrelated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated",
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"k":"dg=="}}`}},
		Data: map[string][]byte{"k": []byte("v")}}
	g.Expect(k8sClient.Create(ctx, unrelated)).To(Succeed())
	p := newPipeline(ns, "reader")
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	g.Eventually(func(g Gomega) { get(g, ns, "reader-portal", &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())

	// Touch both other Secrets: their metadata events must not lead to reads.
	for _, s := range []*corev1.Secret{unrelated, get(g, other, "oauth", &corev1.Secret{})} {
		s = get(g, s.Namespace, s.Name, &corev1.Secret{})
		s.Data["k2"] = []byte("changed")
		g.Expect(k8sClient.Update(ctx, s)).To(Succeed())
	}
	// A change of the referenced one is seen (through the metadata watch).
	before := len(secretGets.secretsRead())
	o := get(g, ns, "oauth", &corev1.Secret{})
	o.Data["client-id"] = []byte("rotated")
	g.Expect(k8sClient.Update(ctx, o)).To(Succeed())
	g.Eventually(func() int { return len(secretGets.secretsRead()) }, timeout, interval).Should(BeNumerically(">", before))

	for _, key := range secretGets.secretsRead() {
		if key.Namespace == ns || key.Namespace == other {
			g.Expect(key).To(BeElementOf(client.ObjectKey{Namespace: ns, Name: "oauth"}, client.ObjectKey{Namespace: ns, Name: "reader-handover-key"}),
				"read a Secret the pipeline does not reference")
		}
	}
	// The operator's Secret cache holds names only: no data, no annotations.
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	g.Expect(suiteReconciler.pods.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
		g.Expect(s.Annotations).To(BeEmpty(), "Secret %s cached with its annotations", s.Name)
	}
	g.Expect(names).To(ContainElement("unrelated"))
}

// TestPodDeletionCostFollowsInFlightJobs: the operator reads each running
// worker's in-flight jobs from its /metrics and sets the pod deletion cost
// from it, so that a scale-down removes the idlest pod.
func TestPodDeletionCostFollowsInFlightJobs(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "cost")
	p.Spec.Replicas = ptr.To[int32](2)
	p.Spec.Scaling = v1.ScalingSpec{Mode: v1.ScalingManual, PollInterval: &metav1.Duration{Duration: time.Second}}
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())

	var pods corev1.PodList
	g.Eventually(func(g Gomega) {
		g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{v1.LabelPipeline: "cost"})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(2))
	}, timeout, interval).Should(Succeed())

	// One fake worker metrics endpoint per pod, on its own loopback
	// address: the pods' IPs (envtest has no kubelet; the test plays it).
	var mu sync.Mutex
	inFlight := map[string]int{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		ip := fmt.Sprintf("127.0.%d.%d", 10+rand.Intn(200), 2+i)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(testMetricsPort)))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", ip, err)
		}
		name := pod.Name
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			n := inFlight[name]
			mu.Unlock()
			fmt.Fprintf(w, "# TYPE kafkasend_portal_in_flight_jobs gauge\nkafkasend_portal_in_flight_jobs %d\n", n)
		}), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		mu.Lock()
		inFlight[name] = 3 + 10*i
		mu.Unlock()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = ip
		pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		g.Expect(k8sClient.Status().Update(ctx, pod)).To(Succeed())
	}
	cost := func(g Gomega, name string) string {
		return get(g, ns, name, &corev1.Pod{}).Annotations[v1.AnnotationPodDeletionCost]
	}
	a, b := pods.Items[0].Name, pods.Items[1].Name
	g.Eventually(func(g Gomega) {
		g.Expect(cost(g, a)).To(Equal("3"))
		g.Expect(cost(g, b)).To(Equal("13"))
	}, timeout, interval).Should(Succeed())

	// The first pod takes on work: its cost follows.
	mu.Lock()
	inFlight[a] = 40
	mu.Unlock()
	g.Eventually(func(g Gomega) { g.Expect(cost(g, a)).To(Equal("40")) }, timeout, interval).Should(Succeed())
	// Unchanged costs are not rewritten.
	rv := get(g, ns, b, &corev1.Pod{}).ResourceVersion
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, b, &corev1.Pod{}).ResourceVersion).To(Equal(rv))
	}, 3*time.Second, 250*time.Millisecond).Should(Succeed())
}

// TestHandoverKeyIsGeneratedOnce: the operator gives each pipeline a
// handover key Secret of its own, owned by the pipeline and mounted into
// its workers; it keeps the key across reconciles and creates a new one
// when the Secret is deleted.
func TestHandoverKeyIsGeneratedOnce(t *testing.T) {
	requireEnvtest(t)
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, oauthSecret(ns))).To(Succeed())
	p := newPipeline(ns, "signed")
	g.Expect(k8sClient.Create(ctx, p)).To(Succeed())
	var key []byte
	g.Eventually(func(g Gomega) {
		s := get(g, ns, "signed-handover-key", &corev1.Secret{})
		g.Expect(s.Data["key"]).To(HaveLen(32))
		g.Expect(s.OwnerReferences).To(HaveLen(1))
		g.Expect(s.OwnerReferences[0].Name).To(Equal("signed"))
		key = s.Data["key"]
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		d := get(g, ns, "signed-portal", &appsv1.Deployment{})
		var mounted bool
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == "signed-handover-key" {
					mounted = true
				}
			}
		}
		g.Expect(mounted).To(BeTrue(), "handover key not mounted into the workers")
	}, timeout, interval).Should(Succeed())

	// A spec change reconciles again: the key stays.
	cur := get(g, ns, "signed", &v1.PortalPipeline{})
	cur.Spec.Concurrency.MaxInFlight = 7
	g.Expect(k8sClient.Update(ctx, cur)).To(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, "signed-handover-key", &corev1.Secret{}).Data["key"]).To(Equal(key))
	}, 2*time.Second, interval).Should(Succeed())

	// Deleted: a new one is generated.
	g.Expect(k8sClient.Delete(ctx, get(g, ns, "signed-handover-key", &corev1.Secret{}))).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := get(g, ns, "signed-handover-key", &corev1.Secret{})
		g.Expect(s.Data["key"]).To(HaveLen(32))
		g.Expect(s.Data["key"]).NotTo(Equal(key))
	}, timeout, interval).Should(Succeed())
}
