package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// buildInstaller runs hack/build-installer.sh (what `make build-installer`
// writes to dist/install.yaml) with the kustomize the Makefile builds.
func buildInstaller(t *testing.T, root, img, workerImg string) string {
	t.Helper()
	kustomize := newestBinary(filepath.Join(root, "bin", "kustomize-*"))
	if kustomize == "" {
		skipOrFail(t, "no kustomize in %s: run `make tools`", filepath.Join(root, "bin"))
	}
	cmd := exec.Command(filepath.Join(root, "hack", "build-installer.sh"), img, workerImg)
	cmd.Env = append(os.Environ(), "KUSTOMIZE="+kustomize)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-installer.sh: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// TestInstallerImages: both images reach the manager, tags and digests.
func TestInstallerImages(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	digest := "sha256:" + strings.Repeat("c", 64)
	objs, err := decodeObjects([]byte(buildInstaller(t, root, "reg.example/op@"+digest, "reg.example/portal:v7")))
	g.Expect(err).NotTo(HaveOccurred())
	d := convert[appsv1.Deployment](t, only(t, objs, "Deployment"))
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Image).To(Equal("reg.example/op@" + digest))
	g.Expect(c.Env).To(ContainElement(And(HaveField("Name", "KAFKASEND_WORKER_IMAGE"), HaveField("Value", "reg.example/portal:v7"))))
	g.Expect(kinds(objs)).To(HaveKeyWithValue("CustomResourceDefinition", 1))
	g.Expect(kinds(objs)).To(HaveKeyWithValue("Namespace", 1))
	out, err := exec.Command(filepath.Join(root, "hack", "build-installer.sh"), "only-one").CombinedOutput()
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("usage:"))
}

// TestInstallerApplies applies the installer to a real API server, as
// `kubectl apply --server-side -f dist/install.yaml` does: every object is
// accepted, the CRD is served and the operator pod passes the restricted
// Pod Security Standard of its namespace. (No kubelet runs here: that the
// operator becomes Ready is for the real-cluster suite.)
func TestInstallerApplies(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	manifest := buildInstaller(t, root, "reg.example/op:v7", "reg.example/portal:v7")
	k8s, _ := startAPIServer(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, err := decodeObjects([]byte(manifest))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(objs)).To(BeNumerically(">=", 10))
	for _, o := range objs {
		// In the installer's order, as kubectl applies it.
		g.Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("kubectl"), client.ForceOwnership)).To(Succeed(),
			"%s %s", o.GetKind(), o.GetName())
	}
	var crd apiextensionsv1.CustomResourceDefinition
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "portalpipelines.kafkasend.io"}, &crd)).To(Succeed())
		g.Expect(crd.Status.Conditions).To(ContainElement(And(
			HaveField("Type", apiextensionsv1.Established), HaveField("Status", apiextensionsv1.ConditionTrue))))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	var dep appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "kafkasend-system", Name: deploymentName}, &dep)).To(Succeed())
	checkRestricted(ctx, t, k8s, &dep)
	sample := readSample(t, root)
	sample.Namespace = "default"
	g.Expect(k8s.Create(ctx, sample)).To(Succeed())
}
