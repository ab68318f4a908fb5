// Package controllers reconciles PortalPipelines into worker Deployments and
// their ConfigMap, ServiceAccount, Service and PodDisruptionBudget (and a
// KEDA ScaledObject in KEDA mode), scales the workers on the backlog
// measured off the reconcile path, and reports status conditions.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rcrowley/go-metrics"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// FieldOwner is the server-side apply field manager of everything the
// controller writes.
const FieldOwner = "kafkasend-operator"

// secretIndex indexes PortalPipelines by the Secrets they reference.
const secretIndex = ".spec.secretNames"

// PortalPipelineReconciler reconciles PortalPipeline objects.
type PortalPipelineReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder recorder.EventRecorder
	// WorkerImage is the portal image used when a pipeline names none.
	WorkerImage string
	// Lag measures the backlog; nil disables measuring (and autoscaling).
	Lag LagSource
	// Clock is replaceable in tests.
	Clock clock.PassiveClock
	// APIReader reads Secrets without caching them; the manager's API
	// reader when nil.
	APIReader client.Reader
	// RESTMapper finds out whether KEDA is installed; the manager's when nil.
	RESTMapper meta.RESTMapper
	// Namespaces restricts the operator's own caches of worker pods and
	// Secret metadata (empty: all namespaces, like the manager's cache).
	Namespaces []string
	// MetricsPort, when set, replaces the workers' metrics port when their
	// in-flight jobs are read (tests).
	MetricsPort int

	scaler autoscaler
	poller *lagPoller
	pods   client.Reader
}

// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects;triggerauthentications,verbs=get;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile brings the children of one PortalPipeline in line with its spec
// and writes its status once.
func (r *PortalPipelineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1.PortalPipeline{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		// Children carry owner references; the garbage collector removes them.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}

	original := p.DeepCopy()
	obs, err := r.reconcileNormal(ctx, p)
	setStatus(p, obs, r.now())
	r.emitEvents(original, p)
	recordMetrics(req.NamespacedName, p.Status.ConsumerLag, p.Status.Backlog, p.Status.DesiredReplicas, p.Status.ReadyReplicas)
	if !equality.Semantic.DeepEqual(original.Status, p.Status) {
		if uerr := r.Status().Patch(ctx, p, client.MergeFrom(original)); client.IgnoreNotFound(uerr) != nil {
			err = errors.Join(err, fmt.Errorf("updating status: %w", uerr))
		}
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: v1.DurationOr(p.Spec.Scaling.PollInterval, v1.DefaultPollInterval)}, nil
}

// emitEvents records a Warning when the Degraded cause changes (never
// again for an unchanged cause).
func (r *PortalPipelineReconciler) emitEvents(before, after *v1.PortalPipeline) {
	now := meta.FindStatusCondition(after.Status.Conditions, v1.ConditionDegraded)
	if now == nil || now.Status != metav1.ConditionTrue {
		return
	}
	if was := meta.FindStatusCondition(before.Status.Conditions, v1.ConditionDegraded); was != nil &&
		was.Status == now.Status && was.Reason == now.Reason {
		return
	}
	r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
}

func (r *PortalPipelineReconciler) reconcileNormal(ctx context.Context, p *v1.PortalPipeline) (*observed, error) {
	logger := log.FromContext(ctx)
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	obs := &observed{desired: p.Status.DesiredReplicas}

	current := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: childName(p)}, current); err != nil {
		current = nil
		if !apierrors.IsNotFound(err) {
			obs.deploymentErr = fmt.Errorf("reading Deployment: %w", err)
			return obs, obs.deploymentErr
		}
	}
	obs.deployment = current

	// The worker's own validation of what would be rendered: the API
	// server admits some specs the worker refuses (this guards against
	// CRDs older than the operator and rules CEL cannot express).
	cfg := RenderConfig(p)
	if err := cfg.Validate(); err != nil {
		obs.invalid = err
		logger.Info("Rendered worker configuration is invalid; not rolling out", "error", err.Error())
		return obs, nil
	}

	if err := ensureHandoverKey(ctx, r.pods, r.Client, p); err != nil {
		obs.secretErr = err
		return obs, err
	}
	secretDigest, files, problem, err := checkSecrets(ctx, r.APIReader, p)
	if err != nil {
		obs.secretErr = err
		return obs, err
	}
	obs.secretProblem = problem
	if problem != nil {
		// Leave running workers alone: new pods could not mount the Secret.
		logger.Info("Referenced Secret is missing", "reason", problem.Reason, "message", problem.Message)
		return obs, nil
	}

	if r.Lag != nil {
		r.poller.ensure(key, lagTarget(p, files), v1.DurationOr(p.Spec.Scaling.PollInterval, v1.DefaultPollInterval))
		obs.reading = r.poller.latest(key)
	}

	mode := p.Spec.Scaling.EffectiveMode()
	switch mode {
	case v1.ScalingLag:
		obs.desired, obs.scaled = r.autoscale(p, obs.reading)
		if obs.scaled {
			if err := r.scale(ctx, p, obs.desired); err != nil {
				return obs, err
			}
		}
	default:
		// Manual: the user's; KEDA: KEDA's (through the scale subresource).
		obs.desired = ptrOr(p.Spec.Replicas, v1.DefaultReplicas)
		r.scaler.forget(key)
	}
	obs.desiredKnown = true

	rendered, err := cfg.Marshal()
	if err != nil {
		return obs, fmt.Errorf("rendering worker config: %w", err)
	}
	hash := configHash(rendered, secretDigest)
	deployment, err := BuildDeployment(p, r.WorkerImage, obs.desired, hash)
	if err != nil {
		obs.applyErr = err
		return obs, err
	}

	var errs []error
	for _, ac := range []runtime.ApplyConfiguration{
		BuildServiceAccount(p),
		BuildConfigMap(p, rendered),
		BuildService(p),
		BuildPodDisruptionBudget(p),
		deployment,
	} {
		if err := r.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			errs = append(errs, fmt.Errorf("applying %T: %w", ac, err))
		}
	}
	switch {
	case mode == v1.ScalingKEDA:
		installed, err := r.reconcileKEDA(ctx, p)
		obs.kedaMissing = !installed && err == nil
		errs = append(errs, err)
	case p.Status.ScalingMode == v1.ScalingKEDA:
		errs = append(errs, r.deleteKEDA(ctx, p))
	}
	p.Status.ScalingMode = mode
	if err := errors.Join(errs...); err != nil {
		obs.applyErr = err
		return obs, err
	}
	if current != nil && current.Spec.Template.Annotations[ConfigHashAnnotation] != hash {
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, ReasonRollingOut, "Reconcile", "Configuration changed; rolling worker pods")
	}
	// Read back the Deployment's status for the conditions.
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: childName(p)}, d); err == nil {
		obs.deployment = d
	}
	var pods corev1.PodList
	if err := r.pods.List(ctx, &pods, client.InNamespace(p.Namespace), client.MatchingLabels(selectorLabels(p))); err != nil {
		obs.podsErr = err
	} else {
		obs.pods = podFailure(pods.Items)
	}
	return obs, nil
}

func ptrOr(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}

// autoscale decides the worker count in Lag mode and reports whether it
// differs from spec.replicas (which the caller then updates through the
// scale subresource).
func (r *PortalPipelineReconciler) autoscale(p *v1.PortalPipeline, reading *lagReading) (int32, bool) {
	in := scaleInputFor(p, reading, r.now())
	want := r.scaler.recommend(types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, in)
	return want, want != in.current
}

// scale sets spec.replicas through the scale subresource, as a
// HorizontalPodAutoscaler would, so that only that field is written.
func (r *PortalPipelineReconciler) scale(ctx context.Context, p *v1.PortalPipeline, replicas int32) error {
	from := "unset"
	if p.Spec.Replicas != nil {
		from = fmt.Sprint(*p.Spec.Replicas)
	}
	s := &autoscalingv1.Scale{}
	if err := r.SubResource("scale").Get(ctx, p, s); err != nil {
		return fmt.Errorf("reading scale: %w", err)
	}
	s.Spec.Replicas = replicas
	if err := r.SubResource("scale").Update(ctx, p, client.WithSubResourceBody(s)); err != nil {
		return fmt.Errorf("updating scale: %w", err)
	}
	r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "Scaled", "Autoscale", "Scaled workers from %s to %d", from, replicas)
	log.FromContext(ctx).Info("Scaled workers", "from", from, "to", replicas)
	p.Spec.Replicas = &replicas
	return nil
}

func (r *PortalPipelineReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func (r *PortalPipelineReconciler) forget(key types.NamespacedName) {
	r.scaler.forget(key)
	if r.poller != nil {
		r.poller.forget(key)
	}
	forgetMetrics(key)
}

// SetupWithManager registers the controller, its watches, the backlog
// poller and the Secret index.
func (r *PortalPipelineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// sarama's go-metrics would grow without bound in a long-running
	// operator and nobody reads them.
	metrics.UseNilMetrics = true
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("kafkasend-operator")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.RESTMapper == nil {
		r.RESTMapper = mgr.GetRESTMapper()
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1.PortalPipeline{}, secretIndex,
		func(o client.Object) []string { return SecretNames(o.(*v1.PortalPipeline)) }); err != nil {
		return fmt.Errorf("indexing pipelines by Secret: %w", err)
	}

	// A cache of the operator's own: worker pods only (by label), and
	// Secrets as bare names (metadata without labels or annotations; the
	// data of referenced Secrets is read through the API reader).
	narrow, err := r.newNarrowCache(mgr)
	if err != nil {
		return err
	}
	if err := mgr.Add(narrow); err != nil {
		return err
	}
	r.pods = narrow

	r.poller = newLagPoller(r.Lag)
	coster := newPodCoster(narrow, mgr.GetClient(), r.MetricsPort)
	r.poller.after = coster.update
	if err := mgr.Add(r.poller); err != nil {
		return err
	}

	secretMeta := &metav1.PartialObjectMetadata{}
	secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.PortalPipeline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		WatchesRawSource(source.Kind(narrow, client.Object(secretMeta), handler.EnqueueRequestsFromMapFunc(r.pipelinesForSecret))).
		WatchesRawSource(source.Kind(narrow, client.Object(&corev1.Pod{}), handler.EnqueueRequestsFromMapFunc(pipelineOfPod))).
		WatchesRawSource(source.Channel(r.poller.events, &handler.EnqueueRequestForObject{})).
		Named("portalpipeline").
		Complete(r)
}

// newNarrowCache caches worker pods (selected by label) and Secret names.
func (r *PortalPipelineReconciler) newNarrowCache(mgr ctrl.Manager) (cache.Cache, error) {
	secretMeta := &metav1.PartialObjectMetadata{}
	secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	opts := cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{v1.LabelName: v1.WorkerAppName})},
			secretMeta: {Transform: func(o any) (any, error) {
				if m, ok := o.(metav1.Object); ok {
					m.SetAnnotations(nil)
					m.SetLabels(nil)
					m.SetManagedFields(nil)
				}
				return o, nil
			}},
		},
	}
	if len(r.Namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range r.Namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(mgr.GetConfig(), opts)
	if err != nil {
		return nil, fmt.Errorf("creating the pod and Secret-name cache: %w", err)
	}
	return c, nil
}

// pipelineOfPod maps a worker pod to its pipeline.
func pipelineOfPod(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[v1.LabelPipeline]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// pipelinesForSecret maps a Secret to the pipelines that reference it.
func (r *PortalPipelineReconciler) pipelinesForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1.PortalPipelineList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{secretIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "Listing pipelines for Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return reqs
}
