package controllers

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/portal/config"
)

// Names, labels and paths shared by the rendered children.
const (
	// ConfigFileName is the key of the rendered portal configuration.
	ConfigFileName = "portal.yaml"
	// ConfigHashAnnotation on the pod template changes, and so rolls the pods,
	// whenever the rendered configuration or a Secret the pods cannot reload changes.
	ConfigHashAnnotation = v1.AnnotationConfigHash
	// PipelineLabel names the owning PortalPipeline on every child.
	PipelineLabel = v1.LabelPipeline

	// saslUsernameKey is the ConfigMap key of a SASL user name given in the
	// spec (not secret), mounted next to the configuration.
	saslUsernameKey = "kafka-sasl-username"

	configDir     = "/etc/kafkasend/config"
	secretsDir    = "/etc/kafkasend/secrets"
	metricsPort   = 9090
	healthPort    = 8081
	containerName = "portal"
	workerUID     = 65532
	// graceHeadroom is added to request + drain for the last answers,
	// commits and hand-over records of a stopping worker.
	graceHeadroom = 15 * time.Second
	// The worker's memory besides the request bytes it holds
	// (concurrency.maxBytes), from the figures in docs/benchmarks.md: about
	// 22 MiB idle, about 42 KiB per in-flight call, and one response body
	// being answered. See docs/scaling.md.
	workerBaseBytes        = 32 << 20
	workerPerInFlightBytes = 48 << 10
)

// childName is the name of every object a pipeline owns.
func childName(p *v1.PortalPipeline) string { return p.Name + "-portal" }

// selectorLabels select the worker pods of one pipeline.
func selectorLabels(p *v1.PortalPipeline) map[string]string {
	return map[string]string{
		v1.LabelName:     v1.WorkerAppName,
		v1.LabelInstance: p.Name,
	}
}

// commonLabels are set on every child.
func commonLabels(p *v1.PortalPipeline) map[string]string {
	l := selectorLabels(p)
	l["app.kubernetes.io/component"] = "portal"
	l["app.kubernetes.io/managed-by"] = "kafkasend-operator"
	l[PipelineLabel] = p.Name
	return l
}

// ConsumerGroup is the effective consumer group of a pipeline.
func ConsumerGroup(p *v1.PortalPipeline) string { return p.EffectiveConsumerGroup() }

// secretMount is one Secret key projected into the worker pods.
type secretMount struct {
	ref secretRef
	// file is the path below secretsDir.
	file string
	// restart is true when the worker cannot reload the file and must be
	// restarted when it changes.
	restart bool
}

// secretRef is one Secret key a pipeline uses, with what for.
type secretRef struct {
	Secret, Key string
	// Field is the spec field that names it, for messages.
	Field string
}

// Files below secretsDir.
const (
	fileKafkaCA       = "kafka/ca.crt"
	fileKafkaCert     = "kafka/tls.crt"
	fileKafkaKey      = "kafka/tls.key"
	fileSASLUsername  = "kafka/sasl-username"
	fileSASLPassword  = "kafka/sasl-password"
	fileUpstreamCA    = "upstream/ca.crt"
	fileOAuthClientID = "oauth/client-id"
	fileOAuthSecret   = "oauth/client-secret"
	fileHandoverKey   = "handover/key"
)

// HandoverKeySecret is the name of the Secret the operator generates for a
// pipeline: the key its workers sign their handover control records with.
func HandoverKeySecret(p *v1.PortalPipeline) string { return p.Name + "-handover-key" }

// handoverKeyKey is the key of the handover key in its Secret.
const handoverKeyKey = "key"

// headerFile is where the value of the i-th Secret-backed header (in name
// order) is mounted.
func headerFile(i int) string { return fmt.Sprintf("headers/%d", i) }

// secretHeaders are the Secret-backed upstream headers in name order.
func secretHeaders(p *v1.PortalPipeline) []v1.UpstreamHeader {
	var out []v1.UpstreamHeader
	for _, h := range p.Spec.Upstream.Headers {
		if h.ValueFrom != nil {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// secretMounts lists the Secret keys a pipeline mounts, in a stable order.
// OAuth client credentials and header values are re-read by the worker when
// they change, so they do not roll the pods; Kafka and upstream TLS
// material and the SASL credentials do.
func secretMounts(p *v1.PortalPipeline) []secretMount {
	var m []secretMount
	add := func(ref *v1.SecretKeyRef, field, file string, restart bool) {
		if ref != nil {
			m = append(m, secretMount{secretRef{ref.Name, ref.Key, field}, file, restart})
		}
	}
	k := p.Spec.Kafka
	if k.TLS != nil {
		add(k.TLS.CASecretRef, "spec.kafka.tls.caSecretRef", fileKafkaCA, true)
		if c := k.TLS.ClientCertSecretRef; c != nil {
			certKey, keyKey := c.CertKey, c.KeyKey
			if certKey == "" {
				certKey = corev1.TLSCertKey
			}
			if keyKey == "" {
				keyKey = corev1.TLSPrivateKeyKey
			}
			add(&v1.SecretKeyRef{Name: c.Name, Key: certKey}, "spec.kafka.tls.clientCertSecretRef", fileKafkaCert, true)
			add(&v1.SecretKeyRef{Name: c.Name, Key: keyKey}, "spec.kafka.tls.clientCertSecretRef", fileKafkaKey, true)
		}
	}
	if s := k.SASL; s != nil {
		add(s.UsernameSecretRef, "spec.kafka.sasl.usernameSecretRef", fileSASLUsername, true)
		add(&s.PasswordSecretRef, "spec.kafka.sasl.passwordSecretRef", fileSASLPassword, true)
	}
	add(p.Spec.Upstream.CASecretRef, "spec.upstream.caSecretRef", fileUpstreamCA, true)
	if o := p.Spec.OAuth; o != nil {
		add(&o.ClientIDSecretRef, "spec.oauth.clientIDSecretRef", fileOAuthClientID, false)
		add(&o.ClientSecretSecretRef, "spec.oauth.clientSecretSecretRef", fileOAuthSecret, false)
	}
	for i, h := range secretHeaders(p) {
		ref := h.ValueFrom.SecretKeyRef
		add(&ref, fmt.Sprintf("spec.upstream.headers[%s].valueFrom.secretKeyRef", h.Name), headerFile(i), false)
	}
	// Generated by the operator (ensureHandoverKey); a new key rolls the
	// workers, which read it once.
	add(&v1.SecretKeyRef{Name: HandoverKeySecret(p), Key: handoverKeyKey}, "the operator's handover key", fileHandoverKey, true)
	return m
}

// SecretNames lists the distinct Secret names a pipeline references, sorted.
func SecretNames(p *v1.PortalPipeline) []string {
	seen := map[string]bool{}
	var names []string
	for _, m := range secretMounts(p) {
		if !seen[m.ref.Secret] {
			seen[m.ref.Secret] = true
			names = append(names, m.ref.Secret)
		}
	}
	sort.Strings(names)
	return names
}

func secretPath(file string) string { return path.Join(secretsDir, file) }

// RenderConfig renders the worker configuration of a pipeline. It holds
// file paths of the mounted Secrets, never their contents.
func RenderConfig(p *v1.PortalPipeline) config.Config {
	s := p.Spec
	c := config.Default()
	c.Kafka.Brokers = append([]string(nil), s.Kafka.BootstrapServers...)
	c.Kafka.ConsumerGroup = ConsumerGroup(p)
	c.Kafka.InitialOffset = strings.ToLower(string(s.Kafka.InitialOffset))
	if c.Kafka.InitialOffset == "" {
		c.Kafka.InitialOffset = strings.ToLower(string(v1.DefaultInitialOffset))
	}
	c.Kafka.Version = s.Kafka.Version
	c.Kafka.ClientID = "kafkasend-portal." + p.Namespace + "." + p.Name
	if s.Kafka.MaxMessageBytes > 0 {
		c.Kafka.MaxMessageBytes = int(s.Kafka.MaxMessageBytes)
	}
	c.Kafka.SessionTimeout.Duration = v1.DurationOr(s.Kafka.SessionTimeout, v1.DefaultSessionTimeout)
	c.Kafka.HeartbeatInterval.Duration = v1.DurationOr(s.Kafka.HeartbeatInterval, v1.DefaultHeartbeatInterval)
	c.Kafka.RebalanceProtocol = strings.ToLower(string(s.Kafka.RebalanceProtocol))
	if c.Kafka.RebalanceProtocol == "" {
		c.Kafka.RebalanceProtocol = strings.ToLower(string(v1.DefaultRebalanceProtocol))
	}
	if t := s.Kafka.TLS; t != nil {
		c.Kafka.TLS = &config.TLS{}
		if t.CASecretRef != nil {
			c.Kafka.TLS.CAFile = secretPath(fileKafkaCA)
		}
		if t.ClientCertSecretRef != nil {
			c.Kafka.TLS.CertFile = secretPath(fileKafkaCert)
			c.Kafka.TLS.KeyFile = secretPath(fileKafkaKey)
		}
	}
	if sa := s.Kafka.SASL; sa != nil {
		c.Kafka.SASL = &config.SASL{
			Mechanism:    string(sa.Mechanism),
			UsernameFile: secretPath(fileSASLUsername),
			PasswordFile: secretPath(fileSASLPassword),
		}
		if sa.UsernameSecretRef == nil {
			c.Kafka.SASL.UsernameFile = path.Join(configDir, saslUsernameKey)
		}
	}
	c.Topics = config.Topics{
		Requests: s.Topics.Requests, Replies: s.Topics.Replies, DeadLetter: s.Topics.DeadLetter,
		AllowedReplyTopics:        append([]string(nil), s.Topics.AllowedReplyTopics...),
		AllowedReplyTopicPrefixes: append([]string(nil), s.Topics.AllowedReplyTopicPrefixes...),
	}

	u := s.Upstream
	c.Upstream.BaseURL = u.BaseURL
	c.Upstream.AllowInsecureHTTP = u.AllowInsecureHTTP
	if u.CASecretRef != nil {
		c.Upstream.CAFile = secretPath(fileUpstreamCA)
	}
	c.Upstream.MaxRequestBytes = v1.QuantityOr(u.MaxRequestBytes, c.Upstream.MaxRequestBytes)
	c.Upstream.MaxResponseBytes = v1.QuantityOr(u.MaxResponseBytes, c.Upstream.MaxResponseBytes)
	for _, h := range u.Headers {
		if h.Value != nil {
			if c.Upstream.Headers == nil {
				c.Upstream.Headers = map[string]string{}
			}
			c.Upstream.Headers[h.Name] = *h.Value
		}
	}
	for i, h := range secretHeaders(p) {
		if c.Upstream.HeaderFiles == nil {
			c.Upstream.HeaderFiles = map[string]string{}
		}
		c.Upstream.HeaderFiles[h.Name] = secretPath(headerFile(i))
	}
	c.Upstream.FollowRedirects = u.FollowRedirects
	switch u.HTTP2 {
	case v1.UpstreamHTTP2Always:
		c.Upstream.HTTP2 = config.HTTP2Always
	case v1.UpstreamHTTP2Never:
		c.Upstream.HTTP2 = config.HTTP2Never
	} // Auto is the worker's default: left out of the rendered config
	c.Upstream.ForwardHeaders = append([]string(nil), u.ForwardHeaders...)
	if rl := u.RateLimit; rl != nil {
		c.Upstream.RateLimit = &config.RateLimit{
			RequestsPerSecond: rl.RequestsPerSecond.AsApproximateFloat64(),
			Burst:             int(rl.Burst),
		}
	}

	if o := s.OAuth; o != nil {
		c.OAuth = &config.OAuth{
			TokenURL:          o.TokenURL,
			ClientIDFile:      secretPath(fileOAuthClientID),
			ClientSecretFile:  secretPath(fileOAuthSecret),
			Scopes:            o.Scopes,
			AllowInsecureHTTP: o.AllowInsecureHTTP,
		}
		if o.Audience != "" || len(o.EndpointParams) > 0 {
			c.OAuth.EndpointParams = map[string][]string{}
			for k, v := range o.EndpointParams {
				c.OAuth.EndpointParams[k] = []string{v}
			}
			if o.Audience != "" {
				c.OAuth.EndpointParams["audience"] = []string{o.Audience}
			}
		}
		switch o.AuthStyle {
		case v1.OAuthAuthStyleHeader:
			c.OAuth.AuthStyle = "header"
		case v1.OAuthAuthStyleParams:
			c.OAuth.AuthStyle = "params"
		}
	}

	c.Concurrency.MaxInFlight = int(s.Concurrency.EffectiveMaxInFlight())
	c.Concurrency.MaxBytes = s.Concurrency.EffectiveMaxBytes()

	t := s.Timeouts
	c.Timeouts.Request.Duration = v1.DurationOr(t.Request, v1.DefaultRequestTimeout)
	c.Timeouts.ChunkAssembly.Duration = v1.DurationOr(t.ChunkAssembly, v1.DefaultChunkAssembly)
	c.Timeouts.Drain.Duration = v1.DurationOr(t.Drain, v1.DefaultDrain)
	c.Timeouts.HandoverLease.Duration = v1.DurationOr(t.HandoverLease, v1.DefaultHandoverLease)

	r := s.Retries
	c.Retries.Attempts = int(v1.DefaultAttempts)
	if r.Attempts > 0 {
		c.Retries.Attempts = int(r.Attempts)
	}
	c.Retries.Backoff.Duration = v1.DurationOr(r.Backoff, v1.DefaultBackoff)
	c.Retries.MaxBackoff.Duration = v1.DurationOr(r.MaxBackoff, v1.DefaultMaxBackoff)
	c.Retries.MaxRetryAfter.Duration = v1.DurationOr(r.MaxRetryAfter, v1.DefaultMaxRetryAfter)
	onStatuses := r.OnStatuses
	if onStatuses == nil {
		onStatuses = v1.DefaultOnStatuses()
	}
	c.Retries.OnStatuses = make([]int, len(onStatuses))
	for i, st := range onStatuses {
		c.Retries.OnStatuses[i] = int(st)
	}
	c.Retries.OnConnectionErrors = v1.DefaultOnConnectionErrors
	if r.OnConnectionErrors != nil {
		c.Retries.OnConnectionErrors = *r.OnConnectionErrors
	}
	c.Retries.NonIdempotent = r.NonIdempotent
	c.Handover = &config.Handover{KeyFile: secretPath(fileHandoverKey)}
	return c
}

func ownerRef(p *v1.PortalPipeline) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1.GroupVersion.String()).WithKind("PortalPipeline").
		WithName(p.Name).WithUID(p.UID).
		WithController(true).WithBlockOwnerDeletion(true)
}

// BuildConfigMap renders the worker configuration into a ConfigMap.
func BuildConfigMap(p *v1.PortalPipeline, rendered []byte) *corev1ac.ConfigMapApplyConfiguration {
	data := map[string]string{ConfigFileName: string(rendered)}
	if sa := p.Spec.Kafka.SASL; sa != nil && sa.UsernameSecretRef == nil {
		data[saslUsernameKey] = sa.Username
	}
	return corev1ac.ConfigMap(childName(p), p.Namespace).
		WithLabels(commonLabels(p)).WithOwnerReferences(ownerRef(p)).
		WithData(data)
}

// BuildServiceAccount is the worker pods' identity; it needs no API access.
func BuildServiceAccount(p *v1.PortalPipeline) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(childName(p), p.Namespace).
		WithLabels(commonLabels(p)).WithOwnerReferences(ownerRef(p)).
		WithAutomountServiceAccountToken(false)
}

// BuildService exposes the workers' metrics.
func BuildService(p *v1.PortalPipeline) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(childName(p), p.Namespace).
		WithLabels(commonLabels(p)).WithOwnerReferences(ownerRef(p)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selectorLabels(p)).
			WithPorts(corev1ac.ServicePort().WithName("metrics").WithPort(metricsPort).
				WithTargetPort(intstr.FromString("metrics")).WithProtocol(corev1.ProtocolTCP)))
}

// BuildPodDisruptionBudget lets voluntary disruptions (node drains) take
// one worker at a time. Its stopping worker hands its partitions over and
// finishes its calls within the termination grace period.
func BuildPodDisruptionBudget(p *v1.PortalPipeline) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(childName(p), p.Namespace).
		WithLabels(commonLabels(p)).WithOwnerReferences(ownerRef(p)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(p))))
}

// TerminationGracePeriod lets a stopping worker finish its longest call
// (timeouts.request), get its answers acknowledged (timeouts.drain) and
// write its last commit and hand-over records.
func TerminationGracePeriod(p *v1.PortalPipeline) int64 {
	d := v1.DurationOr(p.Spec.Timeouts.Request, v1.DefaultRequestTimeout) +
		v1.DurationOr(p.Spec.Timeouts.Drain, v1.DefaultDrain) + graceHeadroom
	return int64((d + time.Second - 1) / time.Second)
}

// WorkerMemory is the memory a worker needs at most: the request bytes it
// may hold (concurrency.maxBytes), one response body
// (upstream.maxResponseBytes), its in-flight calls and its base, rounded up
// to a MiB.
func WorkerMemory(p *v1.PortalPipeline) int64 {
	b := p.Spec.Concurrency.EffectiveMaxBytes() +
		v1.QuantityOr(p.Spec.Upstream.MaxResponseBytes, v1.DefaultMaxResponseBytes) +
		int64(p.Spec.Concurrency.EffectiveMaxInFlight())*workerPerInFlightBytes +
		workerBaseBytes
	return roundUpMi(b)
}

// WorkerResources are the worker container's resources: spec.worker.resources
// when set, else a memory request and limit of WorkerMemory and a CPU
// request.
func WorkerResources(p *v1.PortalPipeline) corev1.ResourceRequirements {
	if r := p.Spec.Worker.Resources; r != nil {
		return *r.DeepCopy()
	}
	mem := resource.NewQuantity(WorkerMemory(p), resource.BinarySI)
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: *mem},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: *mem},
	}
}

func roundUpMi(b int64) int64 { return (b + (1<<20 - 1)) / (1 << 20) * (1 << 20) }

// goMemLimit is GOMEMLIMIT for a memory limit: 90% of it, so that the
// garbage collector works harder before the kernel kills the worker.
func goMemLimit(r corev1.ResourceRequirements) string {
	lim, ok := r.Limits[corev1.ResourceMemory]
	if !ok || lim.Value() <= 0 {
		return ""
	}
	return fmt.Sprintf("%dMiB", lim.Value()*9/10>>20)
}

// BuildDeployment renders the worker Deployment.
func BuildDeployment(p *v1.PortalPipeline, image string, replicas int32, configHash string) (*appsv1ac.DeploymentApplyConfiguration, error) {
	w := p.Spec.Worker
	if w.Image != "" {
		image = w.Image
	}
	logLevel := w.LogLevel
	if logLevel == "" {
		logLevel = v1.DefaultLogLevel
	}
	podLabels := map[string]string{}
	for k, v := range w.PodLabels {
		podLabels[k] = v
	}
	for k, v := range commonLabels(p) {
		podLabels[k] = v
	}
	podAnnotations := map[string]string{}
	for k, v := range w.PodAnnotations {
		podAnnotations[k] = v
	}
	podAnnotations[ConfigHashAnnotation] = configHash

	resources := WorkerResources(p)
	ra := corev1ac.ResourceRequirements()
	if resources.Requests != nil {
		ra.WithRequests(resources.Requests)
	}
	if resources.Limits != nil {
		ra.WithLimits(resources.Limits)
	}

	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName("config").WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(childName(p))),
	}
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName("config").WithMountPath(configDir).WithReadOnly(true),
	}
	if sm := secretMounts(p); len(sm) > 0 {
		var sources []*corev1ac.VolumeProjectionApplyConfiguration
		for _, m := range sm {
			sources = append(sources, corev1ac.VolumeProjection().WithSecret(
				corev1ac.SecretProjection().WithName(m.ref.Secret).
					WithItems(corev1ac.KeyToPath().WithKey(m.ref.Key).WithPath(m.file))))
		}
		volumes = append(volumes, corev1ac.Volume().WithName("secrets").WithProjected(
			corev1ac.ProjectedVolumeSource().WithSources(sources...).WithDefaultMode(0o440)))
		mounts = append(mounts, corev1ac.VolumeMount().WithName("secrets").WithMountPath(secretsDir).WithReadOnly(true))
	}
	volumes = append(volumes, corev1ac.Volume().WithName("tmp").WithEmptyDir(corev1ac.EmptyDirVolumeSource()))
	mounts = append(mounts, corev1ac.VolumeMount().WithName("tmp").WithMountPath("/tmp"))

	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(
			corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name"))),
		corev1ac.EnvVar().WithName("POD_NAMESPACE").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(
			corev1ac.ObjectFieldSelector().WithFieldPath("metadata.namespace"))),
	}
	if l := goMemLimit(resources); l != "" {
		env = append(env, corev1ac.EnvVar().WithName("GOMEMLIMIT").WithValue(l))
	}

	container := corev1ac.Container().
		WithName(containerName).
		WithImage(image).
		WithArgs(
			"--config="+path.Join(configDir, ConfigFileName),
			fmt.Sprintf("--metrics-bind-address=:%d", metricsPort),
			fmt.Sprintf("--health-bind-address=:%d", healthPort),
			"--log-level="+logLevel,
		).
		WithEnv(env...).
		WithPorts(
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(metricsPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("health").WithContainerPort(healthPort).WithProtocol(corev1.ProtocolTCP),
		).
		WithResources(ra).
		WithVolumeMounts(mounts...).
		WithLivenessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromString("health"))).
			WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromString("health"))).
			WithPeriodSeconds(5)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithTerminationMessagePolicy(corev1.TerminationMessageFallbackToLogsOnError)
	if w.ImagePullPolicy != "" {
		container.WithImagePullPolicy(w.ImagePullPolicy)
	}

	pod := corev1ac.PodSpec().
		WithServiceAccountName(childName(p)).
		WithAutomountServiceAccountToken(false).
		WithTerminationGracePeriodSeconds(TerminationGracePeriod(p)).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(workerUID).
			WithRunAsGroup(workerUID).
			WithFSGroup(workerUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(volumes...)
	for _, s := range w.ImagePullSecrets {
		pod.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s.Name))
	}
	if len(w.NodeSelector) > 0 {
		pod.WithNodeSelector(w.NodeSelector)
	}
	if w.PriorityClassName != "" {
		pod.WithPriorityClassName(w.PriorityClassName)
	}
	// The scheduling fields pass through as given (same JSON form).
	for _, t := range w.Tolerations {
		ac, err := passThrough[corev1ac.TolerationApplyConfiguration](t)
		if err != nil {
			return nil, err
		}
		pod.WithTolerations(ac)
	}
	for _, t := range w.TopologySpreadConstraints {
		ac, err := passThrough[corev1ac.TopologySpreadConstraintApplyConfiguration](t)
		if err != nil {
			return nil, err
		}
		pod.WithTopologySpreadConstraints(ac)
	}
	if w.Affinity != nil {
		ac, err := passThrough[corev1ac.AffinityApplyConfiguration](w.Affinity)
		if err != nil {
			return nil, err
		}
		pod.WithAffinity(ac)
	}

	return appsv1ac.Deployment(childName(p), p.Namespace).
		WithLabels(commonLabels(p)).WithOwnerReferences(ownerRef(p)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(p))).
			// A rollout starts a replacement before it stops a worker, and
			// stops one at a time: a stopping worker hands its partitions
			// over and finishes its long calls within its grace period.
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(podLabels).WithAnnotations(podAnnotations).
				WithSpec(pod))), nil
}

// passThrough converts a user-given core type into its apply configuration
// (both have the same JSON form).
func passThrough[T any](in any) (*T, error) {
	out := new(T)
	raw, err := json.Marshal(in)
	if err == nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", in, err)
	}
	return out, nil
}
