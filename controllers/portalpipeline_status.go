package controllers

import (
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// Condition reasons, re-exported from the API package for brevity.
const (
	ReasonAvailable          = v1.ReasonAvailable
	ReasonScaledToZero       = v1.ReasonScaledToZero
	ReasonWorkersUnavailable = v1.ReasonWorkersUnavailable
	ReasonDeploymentMissing  = v1.ReasonDeploymentMissing
	ReasonApplyFailed        = v1.ReasonApplyFailed
	ReasonRollingOut         = v1.ReasonRollingOut
	ReasonComplete           = v1.ReasonComplete
	ReasonRolloutStalled     = v1.ReasonRolloutStalled
	ReasonLagUnavailable     = v1.ReasonLagUnavailable
	ReasonAsExpected         = v1.ReasonAsExpected
	ReasonSecretNotFound     = v1.ReasonSecretNotFound
	ReasonSecretKeyNotFound  = v1.ReasonSecretKeyNotFound
	ReasonInvalidSpec        = v1.ReasonInvalidSpec
)

// observed is what one reconcile saw, from which the status is computed.
type observed struct {
	// invalid is the worker's refusal of the rendered configuration.
	invalid error
	// secretProblem is a missing Secret or key; secretErr a failed read.
	secretProblem *secretProblem
	secretErr     error
	// deployment is nil when it does not exist (deploymentErr nil) or
	// could not be read (deploymentErr set).
	deployment    *appsv1.Deployment
	deploymentErr error
	// desired is the replica count asked of the Deployment; desiredKnown
	// is false when the reconcile stopped before deciding it.
	desired      int32
	desiredKnown bool
	scaled       bool
	reading      *lagReading
	applyErr     error
	// kedaMissing is set in KEDA mode when the cluster has no KEDA.
	kedaMissing bool
	pods        *podProblem
	podsErr     error
}

// podProblem is the worst failure among a pipeline's pods.
type podProblem struct {
	Reason, Message string
}

// setStatus computes the whole status from what the reconcile observed.
// What could not be observed keeps its last known value.
func setStatus(p *v1.PortalPipeline, obs *observed, now time.Time) {
	st := &p.Status
	st.ObservedGeneration = p.Generation
	st.ConsumerGroup = ConsumerGroup(p)
	st.Selector = labels.SelectorFromSet(selectorLabels(p)).String()
	if obs.desiredKnown {
		if obs.desired != st.DesiredReplicas && (obs.scaled || st.LastScaleTime == nil) {
			t := metav1.NewTime(now)
			st.LastScaleTime = &t
		}
		st.DesiredReplicas = obs.desired
	}
	switch d := obs.deployment; {
	case d != nil:
		st.Replicas = d.Status.Replicas
		st.ReadyReplicas = d.Status.AvailableReplicas
	case obs.deploymentErr == nil && obs.secretErr == nil:
		st.Replicas, st.ReadyReplicas = 0, 0
	}
	if r := obs.reading; r != nil && r.err == nil {
		res := r.res
		st.ConsumerLag = &res.Lag
		st.Backlog = &res.Backlog
		st.Unconsumed = &res.Unconsumed
		st.HandedOver = &res.HandedOver
		st.Partitions = res.Partitions
		t := metav1.NewTime(r.at)
		st.LagTime = &t
		st.EstimatedDrainTime = nil
		if r.drain != nil {
			st.EstimatedDrainTime = &metav1.Duration{Duration: *r.drain}
		}
	}
	setReadyCondition(p, obs)
	setProgressingCondition(p, obs)
	setDegradedCondition(p, obs)
	setKafkaCondition(p, obs)
}

func setCondition(p *v1.PortalPipeline, t string, s metav1.ConditionStatus, reason, msg string) {
	if len(msg) > 4096 {
		msg = msg[:4093] + "..."
	}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: p.Generation,
	})
}

// observationErr is the first failed read, if any.
func (obs *observed) observationErr() error {
	if obs.secretErr != nil {
		return obs.secretErr
	}
	return obs.deploymentErr
}

func setReadyCondition(p *v1.PortalPipeline, obs *observed) {
	d := obs.deployment
	const t = v1.ConditionReady
	switch {
	case obs.invalid != nil:
		setCondition(p, t, metav1.ConditionFalse, ReasonInvalidSpec, obs.invalid.Error())
	case obs.observationErr() != nil:
		setCondition(p, t, metav1.ConditionUnknown, v1.ReasonObservationFailed, obs.observationErr().Error())
	case obs.secretProblem != nil:
		setCondition(p, t, metav1.ConditionFalse, obs.secretProblem.Reason, obs.secretProblem.Message)
	case obs.applyErr != nil && d == nil:
		setCondition(p, t, metav1.ConditionFalse, ReasonApplyFailed, obs.applyErr.Error())
	case d == nil:
		setCondition(p, t, metav1.ConditionFalse, ReasonDeploymentMissing, "The worker Deployment does not exist yet")
	case obs.desired == 0 && d.Status.Replicas == 0:
		setCondition(p, t, metav1.ConditionTrue, ReasonScaledToZero, "Nothing waiting; workers scaled to zero")
	case d.Status.AvailableReplicas == 0 && obs.pods != nil:
		setCondition(p, t, metav1.ConditionFalse, obs.pods.Reason, obs.pods.Message)
	case d.Status.AvailableReplicas == 0:
		setCondition(p, t, metav1.ConditionFalse, ReasonWorkersUnavailable,
			fmt.Sprintf("0 of %d worker pods available", obs.desired))
	default:
		setCondition(p, t, metav1.ConditionTrue, ReasonAvailable,
			fmt.Sprintf("%d of %d worker pods available", d.Status.AvailableReplicas, obs.desired))
	}
}

func setProgressingCondition(p *v1.PortalPipeline, obs *observed) {
	d := obs.deployment
	const t = v1.ConditionProgressing
	switch {
	case d == nil && obs.observationErr() != nil:
		setCondition(p, t, metav1.ConditionUnknown, v1.ReasonObservationFailed, obs.observationErr().Error())
	case d == nil:
		setCondition(p, t, metav1.ConditionFalse, ReasonDeploymentMissing, "No worker Deployment")
	case d.Status.ObservedGeneration < d.Generation:
		setCondition(p, t, metav1.ConditionTrue, ReasonRollingOut, "Deployment change not yet observed")
	case d.Status.UpdatedReplicas < obs.desired || d.Status.Replicas != d.Status.UpdatedReplicas || d.Status.AvailableReplicas < obs.desired:
		setCondition(p, t, metav1.ConditionTrue, ReasonRollingOut,
			fmt.Sprintf("%d of %d worker pods updated, %d available", d.Status.UpdatedReplicas, obs.desired, d.Status.AvailableReplicas))
	default:
		setCondition(p, t, metav1.ConditionFalse, ReasonComplete,
			fmt.Sprintf("%d worker pods up to date", d.Status.UpdatedReplicas))
	}
}

func setDegradedCondition(p *v1.PortalPipeline, obs *observed) {
	const t = v1.ConditionDegraded
	switch {
	case obs.invalid != nil:
		setCondition(p, t, metav1.ConditionTrue, ReasonInvalidSpec,
			"The worker would refuse this configuration; nothing was rolled out: "+obs.invalid.Error())
	case obs.observationErr() != nil:
		setCondition(p, t, metav1.ConditionUnknown, v1.ReasonObservationFailed, obs.observationErr().Error())
	case obs.secretProblem != nil:
		setCondition(p, t, metav1.ConditionTrue, obs.secretProblem.Reason, obs.secretProblem.Message)
	case obs.applyErr != nil:
		setCondition(p, t, metav1.ConditionTrue, ReasonApplyFailed, obs.applyErr.Error())
	case obs.pods != nil:
		setCondition(p, t, metav1.ConditionTrue, obs.pods.Reason, obs.pods.Message)
	case deploymentStalled(obs.deployment) != "":
		setCondition(p, t, metav1.ConditionTrue, ReasonRolloutStalled, deploymentStalled(obs.deployment))
	case obs.kedaMissing:
		setCondition(p, t, metav1.ConditionTrue, v1.ReasonKEDANotInstalled,
			"scaling.mode is KEDA but the cluster has no KEDA ScaledObject API (install KEDA, or use mode Lag); replicas stay at spec.replicas")
	case obs.reading != nil && obs.reading.err != nil:
		setCondition(p, t, metav1.ConditionTrue, ReasonLagUnavailable,
			"Cannot measure the backlog; the autoscaler holds the current count: "+obs.reading.err.Error())
	default:
		setCondition(p, t, metav1.ConditionFalse, ReasonAsExpected, "")
	}
}

func setKafkaCondition(p *v1.PortalPipeline, obs *observed) {
	const t = v1.ConditionKafkaReachable
	r := obs.reading
	switch {
	case r == nil && (obs.invalid != nil || obs.secretProblem != nil):
		setCondition(p, t, metav1.ConditionUnknown, v1.ReasonNotMeasured, "Not measured until the spec and its Secrets are usable")
	case r == nil:
		if meta.FindStatusCondition(p.Status.Conditions, t) == nil {
			setCondition(p, t, metav1.ConditionUnknown, v1.ReasonNotMeasuredYet, "The first backlog measurement is pending")
		}
	case r.err != nil:
		setCondition(p, t, metav1.ConditionFalse, v1.ReasonKafkaError, r.err.Error())
	default:
		setCondition(p, t, metav1.ConditionTrue, v1.ReasonConnected,
			fmt.Sprintf("Measured %d partitions of %s", r.res.Partitions, p.Spec.Topics.Requests))
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

// podFailure finds the worst failure among the worker pods: a crash loop
// (with the last termination's reason and message), an image that cannot
// be pulled, or an out-of-memory kill.
func podFailure(pods []corev1.Pod) *podProblem {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	rank := map[string]int{v1.ReasonOOMKilled: 4, v1.ReasonCrashLoopBackOff: 3, v1.ReasonImagePullBackOff: 2, v1.ReasonPodFailing: 1}
	var worst *podProblem
	consider := func(pp *podProblem) {
		if worst == nil || rank[pp.Reason] > rank[worst.Reason] {
			worst = pp
		}
	}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range pod.Status.ContainerStatuses {
			last := cs.LastTerminationState.Terminated
			if last == nil {
				last = cs.State.Terminated
			}
			lastMsg := ""
			if last != nil {
				lastMsg = fmt.Sprintf("last exit %d (%s)", last.ExitCode, last.Reason)
				if m := strings.TrimSpace(last.Message); m != "" {
					lastMsg += ": " + tailLines(m, 5)
				}
			}
			switch {
			case last != nil && last.Reason == "OOMKilled":
				consider(&podProblem{v1.ReasonOOMKilled, fmt.Sprintf("Pod %s was killed for exceeding its memory limit (%d restarts); raise spec.worker.resources or lower concurrency.maxBytes", pod.Name, cs.RestartCount)})
			case cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff":
				consider(&podProblem{v1.ReasonCrashLoopBackOff, fmt.Sprintf("Pod %s is crash-looping (%d restarts), %s", pod.Name, cs.RestartCount, lastMsg)})
			case cs.State.Waiting != nil && (cs.State.Waiting.Reason == "ImagePullBackOff" || cs.State.Waiting.Reason == "ErrImagePull" || cs.State.Waiting.Reason == "InvalidImageName"):
				consider(&podProblem{v1.ReasonImagePullBackOff, fmt.Sprintf("Pod %s cannot pull image %s: %s", pod.Name, cs.Image, cs.State.Waiting.Message)})
			case cs.State.Waiting != nil && (cs.State.Waiting.Reason == "CreateContainerConfigError" || cs.State.Waiting.Reason == "CreateContainerError"):
				consider(&podProblem{v1.ReasonPodFailing, fmt.Sprintf("Pod %s cannot start: %s: %s", pod.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)})
			}
		}
	}
	return worst
}

// tailLines keeps the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
