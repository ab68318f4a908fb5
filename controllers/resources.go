package controllers

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/portal/config"
)

// Names, labels and paths shared by the rendered children.
const (
	// ConfigFileName is the key of the rendered portal configuration.
	ConfigFileName = "portal.yaml"
	// ConfigHashAnnotation on the pod template changes, and so rolls the pods,
	// whenever the rendered configuration or a Secret the pods cannot reload changes.
	ConfigHashAnnotation = "kafkasend.io/config-hash"
	// PipelineLabel names the owning PortalPipeline on every child.
	PipelineLabel = "kafkasend.io/pipeline"

	configDir      = "/etc/kafkasend/config"
	secretsDir     = "/etc/kafkasend/secrets"
	metricsPort    = 9090
	healthPort     = 8081
	containerName  = "portal"
	workerUID      = 65532
	drainHeadroom  = 15 * time.Second
	defaultGroupFn = "kafkasend.%s.%s"
)

// childName is the name of every object a pipeline owns.
func childName(p *kafkasendv1alpha1.PortalPipeline) string { return p.Name + "-portal" }

// selectorLabels select the worker pods of one pipeline.
func selectorLabels(p *kafkasendv1alpha1.PortalPipeline) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     "kafkasend-portal",
		"app.kubernetes.io/instance": p.Name,
	}
}

// commonLabels are set on every child.
func commonLabels(p *kafkasendv1alpha1.PortalPipeline) map[string]string {
	l := selectorLabels(p)
	l["app.kubernetes.io/component"] = "portal"
	l["app.kubernetes.io/managed-by"] = "kafkasend-operator"
	l[PipelineLabel] = p.Name
	return l
}

// ConsumerGroup is the effective consumer group of a pipeline.
func ConsumerGroup(p *kafkasendv1alpha1.PortalPipeline) string {
	if p.Spec.Kafka.ConsumerGroup != "" {
		return p.Spec.Kafka.ConsumerGroup
	}
	return fmt.Sprintf(defaultGroupFn, p.Namespace, p.Name)
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

func quantityOr(q *resource.Quantity, def int64) int64 {
	if q == nil {
		return def
	}
	return q.Value()
}

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

// secretMounts lists the Secret keys a pipeline mounts, in a stable order.
// OAuth client credentials are re-read by the worker when they change, so
// they do not roll the pods; Kafka and upstream TLS material does.
func secretMounts(p *kafkasendv1alpha1.PortalPipeline) []secretMount {
	var m []secretMount
	add := func(ref *kafkasendv1alpha1.SecretKeyRef, field, file string, restart bool) {
		if ref != nil {
			m = append(m, secretMount{secretRef{ref.Name, ref.Key, field}, file, restart})
		}
	}
	k := p.Spec.Kafka
	if k.TLS != nil {
		add(k.TLS.CASecretRef, "spec.kafka.tls.caSecretRef", "kafka/ca.crt", true)
		if c := k.TLS.ClientCertSecretRef; c != nil {
			certKey, keyKey := c.CertKey, c.KeyKey
			if certKey == "" {
				certKey = corev1.TLSCertKey
			}
			if keyKey == "" {
				keyKey = corev1.TLSPrivateKeyKey
			}
			add(&kafkasendv1alpha1.SecretKeyRef{Name: c.Name, Key: certKey}, "spec.kafka.tls.clientCertSecretRef", "kafka/tls.crt", true)
			add(&kafkasendv1alpha1.SecretKeyRef{Name: c.Name, Key: keyKey}, "spec.kafka.tls.clientCertSecretRef", "kafka/tls.key", true)
		}
	}
	if s := k.SASL; s != nil {
		add(&s.UsernameSecretRef, "spec.kafka.sasl.usernameSecretRef", "kafka/sasl-username", true)
		add(&s.PasswordSecretRef, "spec.kafka.sasl.passwordSecretRef", "kafka/sasl-password", true)
	}
	add(p.Spec.Upstream.CASecretRef, "spec.upstream.caSecretRef", "upstream/ca.crt", true)
	if o := p.Spec.OAuth; o != nil {
		add(&o.ClientIDSecretRef, "spec.oauth.clientIDSecretRef", "oauth/client-id", false)
		add(&o.ClientSecretSecretRef, "spec.oauth.clientSecretSecretRef", "oauth/client-secret", false)
	}
	return m
}

// SecretNames lists the distinct Secret names a pipeline references, sorted.
func SecretNames(p *kafkasendv1alpha1.PortalPipeline) []string {
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
func RenderConfig(p *kafkasendv1alpha1.PortalPipeline) config.Config {
	s := p.Spec
	c := config.Default()
	c.Kafka.Brokers = append([]string(nil), s.Kafka.BootstrapServers...)
	c.Kafka.ConsumerGroup = ConsumerGroup(p)
	c.Kafka.InitialOffset = strings.ToLower(string(s.Kafka.InitialOffset))
	if c.Kafka.InitialOffset == "" {
		c.Kafka.InitialOffset = "earliest"
	}
	c.Kafka.Version = s.Kafka.Version
	c.Kafka.ClientID = "kafkasend-portal." + p.Namespace + "." + p.Name
	if s.Kafka.MaxMessageBytes > 0 {
		c.Kafka.MaxMessageBytes = int(s.Kafka.MaxMessageBytes)
	}
	if t := s.Kafka.TLS; t != nil {
		c.Kafka.TLS = &config.TLS{}
		if t.CASecretRef != nil {
			c.Kafka.TLS.CAFile = secretPath("kafka/ca.crt")
		}
		if t.ClientCertSecretRef != nil {
			c.Kafka.TLS.CertFile = secretPath("kafka/tls.crt")
			c.Kafka.TLS.KeyFile = secretPath("kafka/tls.key")
		}
	}
	if sa := s.Kafka.SASL; sa != nil {
		c.Kafka.SASL = &config.SASL{
			Mechanism:    string(sa.Mechanism),
			UsernameFile: secretPath("kafka/sasl-username"),
			PasswordFile: secretPath("kafka/sasl-password"),
		}
	}
	c.Topics = config.Topics{Requests: s.Topics.Requests, Replies: s.Topics.Replies, DeadLetter: s.Topics.DeadLetter}

	u := s.Upstream
	c.Upstream.BaseURL = u.BaseURL
	c.Upstream.AllowInsecureHTTP = u.AllowInsecureHTTP
	if u.CASecretRef != nil {
		c.Upstream.CAFile = secretPath("upstream/ca.crt")
	}
	c.Upstream.MaxRequestBytes = quantityOr(u.MaxRequestBytes, c.Upstream.MaxRequestBytes)
	c.Upstream.MaxResponseBytes = quantityOr(u.MaxResponseBytes, c.Upstream.MaxResponseBytes)
	if len(u.Headers) > 0 {
		c.Upstream.Headers = make(map[string]string, len(u.Headers))
		for k, v := range u.Headers {
			c.Upstream.Headers[k] = string(v)
		}
	}
	c.Upstream.FollowRedirects = u.FollowRedirects

	if o := s.OAuth; o != nil {
		c.OAuth = &config.OAuth{
			TokenURL:         o.TokenURL,
			ClientIDFile:     secretPath("oauth/client-id"),
			ClientSecretFile: secretPath("oauth/client-secret"),
			Scopes:           o.Scopes,
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
		case kafkasendv1alpha1.OAuthAuthStyleHeader:
			c.OAuth.AuthStyle = "header"
		case kafkasendv1alpha1.OAuthAuthStyleParams:
			c.OAuth.AuthStyle = "params"
		}
	}

	if s.Concurrency.MaxInFlight > 0 {
		c.Concurrency.MaxInFlight = int(s.Concurrency.MaxInFlight)
	}
	c.Concurrency.MaxBytes = quantityOr(s.Concurrency.MaxBytes, c.Concurrency.MaxBytes)

	c.Timeouts.Request.Duration = durationOr(s.Timeouts.Request, c.Timeouts.Request.Duration)
	c.Timeouts.ChunkAssembly.Duration = durationOr(s.Timeouts.ChunkAssembly, c.Timeouts.ChunkAssembly.Duration)
	c.Timeouts.Drain.Duration = durationOr(s.Timeouts.Drain, c.Timeouts.Drain.Duration)

	r := s.Retries
	if r.Attempts > 0 {
		c.Retries.Attempts = int(r.Attempts)
	}
	c.Retries.Backoff.Duration = durationOr(r.Backoff, c.Retries.Backoff.Duration)
	c.Retries.MaxBackoff.Duration = durationOr(r.MaxBackoff, c.Retries.MaxBackoff.Duration)
	if r.OnStatuses != nil {
		c.Retries.OnStatuses = make([]int, len(r.OnStatuses))
		for i, st := range r.OnStatuses {
			c.Retries.OnStatuses[i] = int(st)
		}
	}
	if r.OnConnectionErrors != nil {
		c.Retries.OnConnectionErrors = *r.OnConnectionErrors
	}
	c.Retries.NonIdempotent = r.NonIdempotent
	return c
}

func ownerRef(p *kafkasendv1alpha1.PortalPipeline) metav1.OwnerReference {
	return *metav1.NewControllerRef(p, kafkasendv1alpha1.GroupVersion.WithKind("PortalPipeline"))
}

func objectMeta(p *kafkasendv1alpha1.PortalPipeline) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            childName(p),
		Namespace:       p.Namespace,
		Labels:          commonLabels(p),
		OwnerReferences: []metav1.OwnerReference{ownerRef(p)},
	}
}

// BuildConfigMap renders the worker configuration into a ConfigMap.
func BuildConfigMap(p *kafkasendv1alpha1.PortalPipeline, rendered []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(p),
		Data:       map[string]string{ConfigFileName: string(rendered)},
	}
}

// BuildServiceAccount is the worker pods' identity; it needs no API access.
func BuildServiceAccount(p *kafkasendv1alpha1.PortalPipeline) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   objectMeta(p),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// BuildService exposes the workers' metrics.
func BuildService(p *kafkasendv1alpha1.PortalPipeline) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p),
		Spec: corev1.ServiceSpec{
			Selector: selectorLabels(p),
			Ports: []corev1.ServicePort{{
				Name: "metrics", Port: metricsPort, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// BuildPodDisruptionBudget lets voluntary disruptions take one worker at a time.
func BuildPodDisruptionBudget(p *kafkasendv1alpha1.PortalPipeline) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(p),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(p)},
		},
	}
}

// TerminationGracePeriod follows the drain timeout plus time to produce the
// last responses and commit.
func TerminationGracePeriod(p *kafkasendv1alpha1.PortalPipeline) int64 {
	d := durationOr(p.Spec.Timeouts.Drain, 60*time.Second) + drainHeadroom
	return int64((d + time.Second - 1) / time.Second)
}

// BuildDeployment renders the worker Deployment.
func BuildDeployment(p *kafkasendv1alpha1.PortalPipeline, image string, replicas int32, configHash string) *appsv1.Deployment {
	w := p.Spec.Worker
	if w.Image != "" {
		image = w.Image
	}
	logLevel := w.LogLevel
	if logLevel == "" {
		logLevel = "info"
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

	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
	}
	if w.Resources != nil {
		resources = *w.Resources.DeepCopy()
	}

	volumes := []corev1.Volume{{
		Name: "config",
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: childName(p)},
		}},
	}}
	mounts := []corev1.VolumeMount{{Name: "config", MountPath: configDir, ReadOnly: true}}
	if sm := secretMounts(p); len(sm) > 0 {
		var sources []corev1.VolumeProjection
		for _, m := range sm {
			sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: m.ref.Secret},
				Items:                []corev1.KeyToPath{{Key: m.ref.Key, Path: m.file}},
			}})
		}
		volumes = append(volumes, corev1.Volume{
			Name: "secrets",
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: sources, DefaultMode: ptr.To[int32](0o440),
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: "secrets", MountPath: secretsDir, ReadOnly: true})
	}
	volumes = append(volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	mounts = append(mounts, corev1.VolumeMount{Name: "tmp", MountPath: "/tmp"})

	container := corev1.Container{
		Name:            containerName,
		Image:           image,
		ImagePullPolicy: w.ImagePullPolicy,
		Args: []string{
			"--config=" + path.Join(configDir, ConfigFileName),
			fmt.Sprintf("--metrics-bind-address=:%d", metricsPort),
			fmt.Sprintf("--health-bind-address=:%d", healthPort),
			"--log-level=" + logLevel,
		},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: containerName, Resource: "limits.memory",
			}}},
		},
		Ports: []corev1.ContainerPort{
			{Name: "metrics", ContainerPort: metricsPort, Protocol: corev1.ProtocolTCP},
			{Name: "health", ContainerPort: healthPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:    resources,
		VolumeMounts: mounts,
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("health")}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("health")}},
			PeriodSeconds: 5,
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(p),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(p)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            childName(p),
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(TerminationGracePeriod(p)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](workerUID),
						RunAsGroup:     ptr.To[int64](workerUID),
						FSGroup:        ptr.To[int64](workerUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers:                []corev1.Container{container},
					Volumes:                   volumes,
					ImagePullSecrets:          w.ImagePullSecrets,
					NodeSelector:              w.NodeSelector,
					Tolerations:               w.Tolerations,
					Affinity:                  w.Affinity,
					TopologySpreadConstraints: w.TopologySpreadConstraints,
					PriorityClassName:         w.PriorityClassName,
				},
			},
		},
	}
}
