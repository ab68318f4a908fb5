package v1alpha1

// Condition types reported in status.conditions.
const (
	// ConditionReady is True when the worker pods are available (or scaled
	// to zero with nothing waiting) and every referenced Secret is present.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a rollout or a scale change is underway.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when the pipeline cannot do its job fully:
	// an invalid spec, missing Secrets, failing pods, or a backlog that
	// cannot be measured.
	ConditionDegraded = "Degraded"
	// ConditionKafkaReachable is True when the operator's last backlog
	// measurement reached the brokers; False carries the broker's error.
	ConditionKafkaReachable = "KafkaReachable"
)

// Condition reasons.
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
	ReasonSecretNotFound     = "SecretNotFound"
	ReasonSecretKeyNotFound  = "SecretKeyNotFound"
	// ReasonInvalidSpec: the rendered worker configuration fails the
	// worker's own validation; nothing is rolled out.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonObservationFailed: the operator could not read an object it
	// needs (API error); the condition is Unknown.
	ReasonObservationFailed = "ObservationFailed"
	// Pod failures surfaced from the worker pods.
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
	ReasonImagePullBackOff = "ImagePullBackOff"
	ReasonOOMKilled        = "OOMKilled"
	ReasonPodFailing       = "PodFailing"
	// KEDA mode.
	ReasonKEDANotInstalled = "KEDANotInstalled"
	// KafkaReachable reasons.
	ReasonConnected      = "Connected"
	ReasonKafkaError     = "KafkaError"
	ReasonNotMeasuredYet = "NotMeasuredYet"
	ReasonNotMeasured    = "NotMeasured"
)

// Labels and annotations the operator sets.
const (
	// LabelPipeline names the owning PortalPipeline on every child.
	LabelPipeline = "kafkasend.io/pipeline"
	// LabelName and LabelInstance select a pipeline's worker pods.
	LabelName     = "app.kubernetes.io/name"
	LabelInstance = "app.kubernetes.io/instance"
	// WorkerAppName is the LabelName value of every worker pod.
	WorkerAppName = "kafkasend-portal"
	// AnnotationConfigHash on the pod template changes, and so rolls the
	// pods, whenever the rendered configuration or a Secret the pods cannot
	// reload changes.
	AnnotationConfigHash = "kafkasend.io/config-hash"
	// AnnotationPodDeletionCost is the Kubernetes annotation the operator
	// sets on worker pods from their in-flight jobs, so that a scale-down
	// removes the pods with the least work first.
	AnnotationPodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"
)
