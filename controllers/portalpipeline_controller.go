// Package controllers reconciles PortalPipelines into worker Deployments and
// their ConfigMap, ServiceAccount, Service and PodDisruptionBudget, measures
// the consumer lag, scales the workers and reports status conditions.
package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
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
	// Lag measures consumer lag; nil disables measuring (and autoscaling).
	Lag LagSource
	// Clock is replaceable in tests.
	Clock clock.PassiveClock

	scaler  autoscaler
	lagMemo lagMemo
}

// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=kafkasend.io,resources=portalpipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile brings the children of one PortalPipeline in line with its spec
// and writes its status once.
func (r *PortalPipelineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &kafkasendv1alpha1.PortalPipeline{}
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
	if !equality.Semantic.DeepEqual(original.Status, p.Status) {
		if uerr := r.Status().Patch(ctx, p, client.MergeFrom(original)); client.IgnoreNotFound(uerr) != nil {
			err = errors.Join(err, fmt.Errorf("updating status: %w", uerr))
		}
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: durationOr(p.Spec.Scaling.PollInterval, 30*time.Second)}, nil
}

// observed is what one reconcile saw, from which the status is computed.
type observed struct {
	secretProblem *secretProblem
	deployment    *appsv1.Deployment
	desired       int32
	scaled        bool
	lag           *lagObservation
	lagErr        error
	applyErr      error
}

func (r *PortalPipelineReconciler) reconcileNormal(ctx context.Context, p *kafkasendv1alpha1.PortalPipeline) (*observed, error) {
	logger := log.FromContext(ctx)
	obs := &observed{}

	secretDigest, files, problem, err := checkSecrets(ctx, r.Client, p)
	if err != nil {
		return obs, err
	}
	obs.secretProblem = problem

	current := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: childName(p)}, current); err != nil {
		if !apierrors.IsNotFound(err) {
			return obs, fmt.Errorf("reading Deployment: %w", err)
		}
		current = nil
	}
	obs.deployment = current

	if problem != nil {
		// Leave running workers alone: new pods could not mount the Secret.
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, problem.Reason, "Reconcile", problem.Message)
		logger.Info("Referenced Secret is missing", "reason", problem.Reason, "message", problem.Message)
		obs.desired = p.Status.DesiredReplicas
		return obs, nil
	}

	obs.lag, obs.lagErr = r.measureLag(ctx, p, files)
	obs.desired, obs.scaled = r.desiredReplicas(p, obs.lag)
	if obs.scaled {
		if err := r.scale(ctx, p, obs.desired); err != nil {
			return obs, err
		}
	}

	rendered, err := RenderConfig(p).Marshal()
	if err != nil {
		return obs, fmt.Errorf("rendering worker config: %w", err)
	}
	hash := configHash(rendered, secretDigest)

	var errs []error
	for _, obj := range []any{
		BuildServiceAccount(p),
		BuildConfigMap(p, rendered),
		BuildService(p),
		BuildPodDisruptionBudget(p),
		BuildDeployment(p, r.WorkerImage, obs.desired, hash),
	} {
		if err := r.apply(ctx, obj); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		obs.applyErr = err
		return obs, err
	}
	if current != nil && current.Spec.Template.Annotations[ConfigHashAnnotation] != hash {
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "RollingOut", "Reconcile", "Configuration changed; rolling worker pods")
	}
	// Read back the Deployment's status for the conditions.
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: childName(p)}, d); err == nil {
		obs.deployment = d
	}
	return obs, nil
}

// scale sets spec.replicas through the scale subresource, as a
// HorizontalPodAutoscaler would, so that only that field is written.
func (r *PortalPipelineReconciler) scale(ctx context.Context, p *kafkasendv1alpha1.PortalPipeline, replicas int32) error {
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

// apply writes one child with server-side apply under FieldOwner.
func (r *PortalPipelineReconciler) apply(ctx context.Context, obj any) error {
	var ac runtime.ApplyConfiguration
	var kind string
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		ac, kind = &corev1ac.ServiceAccountApplyConfiguration{}, "ServiceAccount"
	case *corev1.ConfigMap:
		ac, kind = &corev1ac.ConfigMapApplyConfiguration{}, "ConfigMap"
	case *corev1.Service:
		ac, kind = &corev1ac.ServiceApplyConfiguration{}, "Service"
	case *policyv1.PodDisruptionBudget:
		ac, kind = &policyv1ac.PodDisruptionBudgetApplyConfiguration{}, "PodDisruptionBudget"
	case *appsv1.Deployment:
		ac, kind = &appsv1ac.DeploymentApplyConfiguration{}, "Deployment"
	default:
		return fmt.Errorf("cannot apply %T", o)
	}
	if err := toApplyConfiguration(obj, ac); err != nil {
		return fmt.Errorf("converting %s: %w", kind, err)
	}
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s: %w", kind, err)
	}
	return nil
}

// toApplyConfiguration converts a typed object into its apply configuration
// without claiming its status or zero-valued metadata.
func toApplyConfiguration(obj any, ac any) error {
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	delete(m, "status")
	stripNullTimestamps(m)
	if raw, err = json.Marshal(m); err != nil {
		return err
	}
	return json.Unmarshal(raw, ac)
}

// stripNullTimestamps removes every "creationTimestamp": null (the object's
// and the pod template's), which typed objects always serialize.
func stripNullTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		if ts, ok := t["creationTimestamp"]; ok && ts == nil {
			delete(t, "creationTimestamp")
		}
		for _, c := range t {
			stripNullTimestamps(c)
		}
	case []any:
		for _, c := range t {
			stripNullTimestamps(c)
		}
	}
}

func (r *PortalPipelineReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func (r *PortalPipelineReconciler) forget(key types.NamespacedName) {
	r.scaler.forget(key)
	r.lagMemo.forget(key)
}

// SetupWithManager registers the controller, its watches and the Secret index.
func (r *PortalPipelineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("kafkasend-operator")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kafkasendv1alpha1.PortalPipeline{}, secretIndex,
		func(o client.Object) []string { return SecretNames(o.(*kafkasendv1alpha1.PortalPipeline)) }); err != nil {
		return fmt.Errorf("indexing pipelines by Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&kafkasendv1alpha1.PortalPipeline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.pipelinesForSecret)).
		Named("portalpipeline").
		Complete(r)
}

// pipelinesForSecret maps a Secret to the pipelines that reference it.
func (r *PortalPipelineReconciler) pipelinesForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list kafkasendv1alpha1.PortalPipelineList
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
