package controllers

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// unitReconciler reconciles against a fake API (no CEL, no defaults), with
// funcs intercepting its calls.
func unitReconciler(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) (*PortalPipelineReconciler, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	base := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&v1.PortalPipeline{}).Build()
	c := interceptor.NewClient(base, funcs)
	return &PortalPipelineReconciler{
		Client: c, APIReader: c, Scheme: scheme, Recorder: events.NewFakeRecorder(100),
		WorkerImage: "portal:test", pods: c, poller: newLagPoller(nil),
	}, base
}

func condition(g Gomega, c client.Client, p *v1.PortalPipeline, t string) *metav1.Condition {
	cur := &v1.PortalPipeline{}
	g.Expect(c.Get(context.Background(), client.ObjectKeyFromObject(p), cur)).To(Succeed())
	cond := meta.FindStatusCondition(cur.Status.Conditions, t)
	g.Expect(cond).NotTo(BeNil(), t)
	return cond
}

// TestInvalidSpecIsReportedNotRolledOut: a spec the API server admitted
// (an older CRD, or a rule CEL cannot express) that the worker would
// refuse is reported with the worker's message, and nothing is rolled out.
func TestInvalidSpecIsReportedNotRolledOut(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	p.Spec.Timeouts.Drain = &metav1.Duration{}            // the worker wants drain > 0
	p.Spec.Upstream.MaxRequestBytes = resourcePtr("64Mi") // and a byte budget that holds one job
	p.Spec.Concurrency.MaxBytes = resourcePtr("8Mi")
	r, c := unitReconciler(t, interceptor.Funcs{}, p)
	_, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)})
	g.Expect(err).NotTo(HaveOccurred())

	ready := condition(g, c, p, v1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(v1.ReasonInvalidSpec))
	g.Expect(ready.Message).To(ContainSubstring("timeouts.drain: must be positive"))
	g.Expect(ready.Message).To(ContainSubstring("concurrency.maxBytes: must be at least upstream.maxRequestBytes"))
	deg := condition(g, c, p, v1.ConditionDegraded)
	g.Expect(deg.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(deg.Reason).To(Equal(v1.ReasonInvalidSpec))
	var ds appsv1.DeploymentList
	g.Expect(c.List(context.Background(), &ds)).To(Succeed())
	g.Expect(ds.Items).To(BeEmpty(), "nothing rolled out")
}

// TestFailedReadsYieldUnknown: a failed API read never reports a state the
// operator did not observe, and keeps the last known figures.
func TestFailedReadsYieldUnknown(t *testing.T) {
	for name, failing := range map[string]client.Object{"Deployment": &appsv1.Deployment{}, "Secret": &corev1.Secret{}} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			p := basePipeline()
			p.Spec.OAuth = &v1.OAuthSpec{
				TokenURL:              "https://login.example.test/token",
				ClientIDSecretRef:     v1.SecretKeyRef{Name: "oauth", Key: "id"},
				ClientSecretSecretRef: v1.SecretKeyRef{Name: "oauth", Key: "secret"},
			}
			p.Status.DesiredReplicas, p.Status.Replicas, p.Status.ReadyReplicas = 3, 3, 2
			r, c := unitReconciler(t, interceptor.Funcs{
				Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if _, ok := obj.(*v1.PortalPipeline); !ok && sameType(obj, failing) {
						return errors.New("etcdserver: request timed out")
					}
					return cl.Get(ctx, key, obj, opts...)
				},
			}, p)
			_, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)})
			g.Expect(err).To(HaveOccurred(), "retried with backoff")
			for _, ct := range []string{v1.ConditionReady, v1.ConditionDegraded} {
				cond := condition(g, c, p, ct)
				g.Expect(cond.Status).To(Equal(metav1.ConditionUnknown), ct)
				g.Expect(cond.Reason).To(Equal(v1.ReasonObservationFailed), ct)
				g.Expect(cond.Message).To(ContainSubstring("request timed out"), ct)
			}
			cur := &v1.PortalPipeline{}
			g.Expect(c.Get(context.Background(), client.ObjectKeyFromObject(p), cur)).To(Succeed())
			g.Expect(cur.Status.DesiredReplicas).To(Equal(int32(3)), "last known figures kept")
			g.Expect(cur.Status.Replicas).To(Equal(int32(3)))
			g.Expect(cur.Status.ReadyReplicas).To(Equal(int32(2)))
		})
	}
}

func sameType(a, b client.Object) bool {
	switch b.(type) {
	case *appsv1.Deployment:
		_, ok := a.(*appsv1.Deployment)
		return ok
	case *corev1.Secret:
		_, ok := a.(*corev1.Secret)
		return ok
	}
	return false
}

// TestWarningsAreNotRepeated: a missing Secret is reported once, not at
// every reconcile.
func TestWarningsAreNotRepeated(t *testing.T) {
	g := NewWithT(t)
	p := basePipeline()
	p.Spec.Upstream.CASecretRef = &v1.SecretKeyRef{Name: "missing", Key: "ca.crt"}
	r, _ := unitReconciler(t, interceptor.Funcs{}, p)
	for range 5 {
		_, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		g.Expect(err).NotTo(HaveOccurred())
	}
	rec := r.Recorder.(*events.FakeRecorder)
	close(rec.Events)
	var warnings []string
	for e := range rec.Events {
		warnings = append(warnings, e)
	}
	g.Expect(warnings).To(HaveLen(1))
	g.Expect(warnings[0]).To(ContainSubstring("SecretNotFound"))
}
