package controllers

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// Condition reasons besides the Secret ones.
const (
	ReasonAvailable          = "Available"
	ReasonScaledToZero       = "ScaledToZero"
	ReasonWorkersUnavailable = "WorkersUnavailable"
	ReasonDeploymentMissing  = "DeploymentMissing"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonRollingOut         = "RollingOut"
	ReasonComplete           = "Complete"
	ReasonRolloutStalled     = "RolloutStalled"
	ReasonLagUnavailable     = "LagUnavailable"
	ReasonAsExpected         = "AsExpected"
)

// setStatus computes the whole status from what the reconcile observed.
func setStatus(p *kafkasendv1alpha1.PortalPipeline, obs *observed, now time.Time) {
	st := &p.Status
	st.ObservedGeneration = p.Generation
	st.ConsumerGroup = ConsumerGroup(p)
	st.Selector = labels.SelectorFromSet(selectorLabels(p)).String()
	if obs.desired != st.DesiredReplicas && (obs.scaled || st.LastScaleTime == nil) {
		t := metav1.NewTime(now)
		st.LastScaleTime = &t
	}
	st.DesiredReplicas = obs.desired
	if d := obs.deployment; d != nil {
		st.Replicas = d.Status.Replicas
		st.ReadyReplicas = d.Status.AvailableReplicas
	} else {
		st.Replicas, st.ReadyReplicas = 0, 0
	}
	if l := obs.lag; l != nil {
		st.ConsumerLag = &l.total
		t := metav1.NewTime(l.at)
		st.LagTime = &t
		st.Partitions = l.partitions
	}
	setReadyCondition(p, obs)
	setProgressingCondition(p, obs)
	setDegradedCondition(p, obs)
}

func setCondition(p *kafkasendv1alpha1.PortalPipeline, t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: p.Generation,
	})
}

func setReadyCondition(p *kafkasendv1alpha1.PortalPipeline, obs *observed) {
	d := obs.deployment
	switch {
	case obs.secretProblem != nil:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionFalse, obs.secretProblem.Reason, obs.secretProblem.Message)
	case obs.applyErr != nil && d == nil:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonApplyFailed, obs.applyErr.Error())
	case d == nil:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDeploymentMissing, "The worker Deployment does not exist yet")
	case obs.desired == 0:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonScaledToZero, "No consumer lag; workers scaled to zero")
	case d.Status.AvailableReplicas == 0:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonWorkersUnavailable,
			fmt.Sprintf("0 of %d worker pods available", obs.desired))
	default:
		setCondition(p, kafkasendv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable,
			fmt.Sprintf("%d of %d worker pods available", d.Status.AvailableReplicas, obs.desired))
	}
}

func setProgressingCondition(p *kafkasendv1alpha1.PortalPipeline, obs *observed) {
	d := obs.deployment
	switch {
	case d == nil:
		setCondition(p, kafkasendv1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonDeploymentMissing, "No worker Deployment")
	case d.Status.ObservedGeneration < d.Generation:
		setCondition(p, kafkasendv1alpha1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, "Deployment change not yet observed")
	case d.Status.UpdatedReplicas < obs.desired || d.Status.Replicas != d.Status.UpdatedReplicas || d.Status.AvailableReplicas < obs.desired:
		setCondition(p, kafkasendv1alpha1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut,
			fmt.Sprintf("%d of %d worker pods updated, %d available", d.Status.UpdatedReplicas, obs.desired, d.Status.AvailableReplicas))
	default:
		setCondition(p, kafkasendv1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete,
			fmt.Sprintf("%d worker pods up to date", d.Status.UpdatedReplicas))
	}
}

func setDegradedCondition(p *kafkasendv1alpha1.PortalPipeline, obs *observed) {
	switch {
	case obs.secretProblem != nil:
		setCondition(p, kafkasendv1alpha1.ConditionDegraded, metav1.ConditionTrue, obs.secretProblem.Reason, obs.secretProblem.Message)
	case obs.applyErr != nil:
		setCondition(p, kafkasendv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonApplyFailed, obs.applyErr.Error())
	case deploymentStalled(obs.deployment) != "":
		setCondition(p, kafkasendv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonRolloutStalled, deploymentStalled(obs.deployment))
	case obs.lagErr != nil:
		setCondition(p, kafkasendv1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonLagUnavailable,
			"Cannot measure consumer lag, autoscaling holds the current count: "+obs.lagErr.Error())
	default:
		setCondition(p, kafkasendv1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
	}
}

// deploymentStalled explains a Deployment whose rollout cannot proceed.
func deploymentStalled(d *appsv1.Deployment) string {
	if d == nil {
		return ""
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return "Worker rollout exceeded its progress deadline: " + c.Message
		}
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return "Worker pods cannot be created: " + c.Message
		}
	}
	return ""
}
