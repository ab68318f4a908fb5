package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// KEDA's objects, built as unstructured (no dependency on KEDA's Go API).
var (
	scaledObjectGVK          = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	triggerAuthenticationGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}
)

// kedaInstalled reports whether the cluster serves KEDA's ScaledObject.
func kedaInstalled(mapper meta.RESTMapper, gvk schema.GroupVersionKind) (bool, error) {
	if mapper == nil {
		return false, nil
	}
	_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("looking up %s: %w", gvk.Kind, err)
	}
}

func kedaMeta(p *v1.PortalPipeline, u *unstructured.Unstructured, gvk schema.GroupVersionKind) {
	u.SetGroupVersionKind(gvk)
	u.SetName(childName(p))
	u.SetNamespace(p.Namespace)
	u.SetLabels(commonLabels(p))
	t := true
	u.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: v1.GroupVersion.String(), Kind: "PortalPipeline", Name: p.Name, UID: p.UID,
		Controller: &t, BlockOwnerDeletion: &t,
	}})
}

// kedaAuthParams maps KEDA's Kafka trigger authentication parameters to
// the pipeline's Secret keys.
func kedaAuthParams(p *v1.PortalPipeline) []any {
	var refs []any
	add := func(param string, ref *v1.SecretKeyRef) {
		if ref != nil {
			refs = append(refs, map[string]any{"parameter": param, "name": ref.Name, "key": ref.Key})
		}
	}
	for _, m := range secretMounts(p) {
		ref := &v1.SecretKeyRef{Name: m.ref.Secret, Key: m.ref.Key}
		switch m.file {
		case fileKafkaCA:
			add("ca", ref)
		case fileKafkaCert:
			add("cert", ref)
		case fileKafkaKey:
			add("key", ref)
		case fileSASLUsername:
			add("username", ref)
		case fileSASLPassword:
			add("password", ref)
		}
	}
	return refs
}

// BuildTriggerAuthentication gives KEDA the pipeline's Kafka credentials;
// nil when the brokers need none.
func BuildTriggerAuthentication(p *v1.PortalPipeline) *unstructured.Unstructured {
	refs := kedaAuthParams(p)
	if len(refs) == 0 {
		return nil
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	kedaMeta(p, u, triggerAuthenticationGVK)
	u.Object["spec"] = map[string]any{"secretTargetRef": refs}
	return u
}

// BuildScaledObject renders the KEDA ScaledObject of a pipeline in KEDA
// mode: KEDA's Kafka trigger on the pipeline's group and requests topic,
// scaling the PortalPipeline through its scale subresource.
func BuildScaledObject(p *v1.PortalPipeline) *unstructured.Unstructured {
	s := p.Spec
	md := map[string]any{
		"bootstrapServers":       strings.Join(s.Kafka.BootstrapServers, ","),
		"consumerGroup":          ConsumerGroup(p),
		"topic":                  s.Topics.Requests,
		"lagThreshold":           strconv.FormatInt(p.EffectiveTargetBacklog(), 10),
		"activationLagThreshold": strconv.FormatInt(s.Scaling.ActivationBacklog, 10),
		"offsetResetPolicy":      "earliest",
		// More consumers than partitions would sit idle.
		"allowIdleConsumers": "false",
	}
	if s.Kafka.InitialOffset == v1.InitialOffsetLatest {
		md["offsetResetPolicy"] = "latest"
	}
	if s.Kafka.Version != "" {
		md["version"] = s.Kafka.Version
	}
	if s.Kafka.TLS != nil {
		md["tls"] = "enable"
	}
	if sa := s.Kafka.SASL; sa != nil {
		md["sasl"] = map[v1.SASLMechanism]string{
			v1.SASLPlain: "plaintext", v1.SASLSCRAMSHA256: "scram_sha256", v1.SASLSCRAMSHA512: "scram_sha512",
		}[sa.Mechanism]
	}
	trigger := map[string]any{"type": "kafka", "metadata": md}
	if len(kedaAuthParams(p)) > 0 {
		trigger["authenticationRef"] = map[string]any{"name": childName(p)}
	}
	window := v1.DurationOr(s.Scaling.ScaleDownStabilizationWindow, v1.DefaultScaleDownWindow)
	u := &unstructured.Unstructured{Object: map[string]any{}}
	kedaMeta(p, u, scaledObjectGVK)
	u.Object["spec"] = map[string]any{
		"scaleTargetRef": map[string]any{
			"apiVersion": v1.GroupVersion.String(), "kind": "PortalPipeline", "name": p.Name,
		},
		"pollingInterval": int64(v1.DurationOr(s.Scaling.PollInterval, v1.DefaultPollInterval).Seconds()),
		"minReplicaCount": int64(s.Scaling.EffectiveMinReplicas()),
		"maxReplicaCount": int64(s.Scaling.EffectiveMaxReplicas()),
		"advanced": map[string]any{
			"horizontalPodAutoscalerConfig": map[string]any{
				"behavior": map[string]any{
					"scaleDown": map[string]any{"stabilizationWindowSeconds": int64(window.Seconds())},
				},
			},
		},
		"triggers": []any{trigger},
	}
	return u
}

// reconcileKEDA applies the ScaledObject (and TriggerAuthentication) of a
// pipeline in KEDA mode. It reports false when KEDA is not installed.
func (r *PortalPipelineReconciler) reconcileKEDA(ctx context.Context, p *v1.PortalPipeline) (bool, error) {
	ok, err := kedaInstalled(r.RESTMapper, scaledObjectGVK)
	if err != nil || !ok {
		return false, err
	}
	if ta := BuildTriggerAuthentication(p); ta != nil {
		if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(ta), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return true, fmt.Errorf("applying TriggerAuthentication: %w", err)
		}
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(BuildScaledObject(p)), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return true, fmt.Errorf("applying ScaledObject: %w", err)
	}
	return true, nil
}

// deleteKEDA removes the ScaledObject and TriggerAuthentication a pipeline
// had in KEDA mode, so that KEDA stops scaling it.
func (r *PortalPipelineReconciler) deleteKEDA(ctx context.Context, p *v1.PortalPipeline) error {
	ok, err := kedaInstalled(r.RESTMapper, scaledObjectGVK)
	if err != nil || !ok {
		return err
	}
	for _, gvk := range []schema.GroupVersionKind{scaledObjectGVK, triggerAuthenticationGVK} {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		u.SetNamespace(p.Namespace)
		u.SetName(childName(p))
		if err := r.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			return fmt.Errorf("deleting %s: %w", gvk.Kind, err)
		}
	}
	return nil
}
