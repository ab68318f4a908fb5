package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// ensureHandoverKey creates the pipeline's handover key Secret (32 random
// bytes, owned by the pipeline) unless it exists. r is the operator's cache
// of Secret names, so that a reconcile costs no API call for it (a cache
// behind a fresh creation only makes Create answer AlreadyExists). It
// never replaces a key:
// workers with different keys ignore each other's handover records, so a
// new key during a rollout may run a handed-over job twice.
func ensureHandoverKey(ctx context.Context, r client.Reader, w client.Writer, p *kafkasendv1alpha1.PortalPipeline) error {
	name := HandoverKeySecret(p)
	err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: name}, &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
	})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generating the handover key: %w", err)
	}
	t := true
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: p.Namespace, Labels: commonLabels(p),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: kafkasendv1alpha1.GroupVersion.String(), Kind: "PortalPipeline", Name: p.Name, UID: p.UID,
				Controller: &t, BlockOwnerDeletion: &t,
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{handoverKeyKey: key},
	}
	if err := w.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Secret %s: %w", name, err)
	}
	return nil
}

// secretProblem is a referenced Secret or key that is not there.
type secretProblem struct {
	Reason  string
	Message string
}

// checkSecrets verifies that every Secret key the pipeline references exists
// and returns a digest of the values the worker cannot reload by itself,
// and the content of each mounted file.
// The OAuth client credentials and header values are excluded from the
// digest: the worker re-reads them, so rotating them does not restart the
// pods. c should be an uncached reader (the manager's API reader): the
// operator caches Secret metadata only, never Secret data.
func checkSecrets(ctx context.Context, c client.Reader, p *kafkasendv1alpha1.PortalPipeline) (string, map[string][]byte, *secretProblem, error) {
	h := sha256.New()
	secrets := map[string]*corev1.Secret{}
	// files maps a mounted file (below secretsDir) to its content.
	files := map[string][]byte{}
	var missing []string
	var missingKeys []string
	for _, m := range secretMounts(p) {
		s, seen := secrets[m.ref.Secret]
		if !seen {
			s = &corev1.Secret{}
			err := c.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: m.ref.Secret}, s)
			switch {
			case apierrors.IsNotFound(err):
				s = nil
				missing = append(missing, fmt.Sprintf("%q (%s)", m.ref.Secret, m.ref.Field))
			case err != nil:
				return "", nil, nil, fmt.Errorf("reading Secret %s: %w", m.ref.Secret, err)
			}
			secrets[m.ref.Secret] = s
		}
		if s == nil {
			continue
		}
		v, ok := s.Data[m.ref.Key]
		if !ok {
			missingKeys = append(missingKeys, fmt.Sprintf("key %q in Secret %q (%s)", m.ref.Key, m.ref.Secret, m.ref.Field))
			continue
		}
		files[m.file] = v
		if m.restart {
			fmt.Fprintf(h, "%s\x00%s\x00%d\x00", m.ref.Secret, m.ref.Key, len(v))
			h.Write(v)
		}
	}
	switch {
	case len(missing) > 0:
		return "", nil, &secretProblem{kafkasendv1alpha1.ReasonSecretNotFound, "Secret not found: " + strings.Join(missing, ", ")}, nil
	case len(missingKeys) > 0:
		return "", nil, &secretProblem{kafkasendv1alpha1.ReasonSecretKeyNotFound, "Missing " + strings.Join(missingKeys, ", ")}, nil
	}
	return hex.EncodeToString(h.Sum(nil)), files, nil, nil
}

// configHash digests the rendered configuration and the Secret digest.
func configHash(rendered []byte, secretDigest string) string {
	h := sha256.New()
	h.Write(rendered)
	h.Write([]byte{0})
	h.Write([]byte(secretDigest))
	return hex.EncodeToString(h.Sum(nil))[:16]
}
