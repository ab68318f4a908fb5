package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// envtestAssets is the folder holding kube-apiserver and etcd: env
// KUBEBUILDER_ASSETS, else the newest bin/k8s/*/ that has them ("" if none).
func envtestAssets(root string) string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	best := newestBinary(filepath.Join(root, "bin", "k8s", "*", "kube-apiserver"))
	if best == "" {
		return ""
	}
	dir := filepath.Dir(best)
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err != nil {
		return ""
	}
	return dir
}

// startAPIServer starts kube-apiserver and etcd (no controllers, no CRDs) and
// returns an admin client and the path of a kubeconfig for helm.
func startAPIServer(t *testing.T, root string) (client.Client, string) {
	t.Helper()
	assets := envtestAssets(root)
	if assets == "" {
		skipOrFail(t, "no envtest assets (kube-apiserver, etcd): set KUBEBUILDER_ASSETS or run hack/envtest-assets.sh")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding the helm user: %v", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("writing the helm user's kubeconfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(kafkasendv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("creating a client: %v", err)
	}
	return c, path
}

// TestHelmInstall installs the chart with the real helm binary into a real
// API server, as a user would, and checks what the install and the uninstall
// leave behind. No kube-controller-manager runs, so no pod starts: the test
// covers what the API server accepts (CRD, RBAC, Pod Security admission), not
// the operator at work (the controllers' envtest suite does that).
func TestHelmInstall(t *testing.T) {
	h := newHelm(t)
	k8s, kubeconfig := startAPIServer(t, h.root)
	helm := h.withKubeconfig(kubeconfig)
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	crdKey := client.ObjectKey{Name: "portalpipelines.kafkasend.io"}
	var crd apiextensionsv1.CustomResourceDefinition
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, crdKey, &crd))).To(BeTrue(), "the CRD exists before helm install")

	notes := helm.mustRun(t, "install", releaseName, chartDir,
		"--namespace", releaseNamespace, "--create-namespace", "--wait=false")
	g.Expect(notes).To(And(
		ContainSubstring("kubectl get portalpipelines"),
		ContainSubstring("kubectl wait --for=condition=Ready portalpipeline/orders"),
		ContainSubstring("rollout status deployment/"+deploymentName),
		ContainSubstring("helm test "+releaseName+" -n "+releaseNamespace),
		ContainSubstring("`helm upgrade` updates it and `helm uninstall` keeps it"),
	), "helm install's notes")

	// The CRD, a template of the chart, is served.
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, crdKey, &crd)).To(Succeed())
		g.Expect(crd.Status.Conditions).To(ContainElement(And(
			HaveField("Type", apiextensionsv1.Established),
			HaveField("Status", apiextensionsv1.ConditionTrue))))
	}).Should(Succeed())

	// The operator and its identity.
	version := appVersion(t)
	var dep appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: deploymentName}, &dep)).To(Succeed())
	g.Expect(dep.Spec.Template.Spec.ServiceAccountName).To(Equal(saName))
	g.Expect(dep.Spec.Template.Spec.Containers).To(ConsistOf(And(
		HaveField("Name", "manager"),
		HaveField("Image", "kafkasend/operator:"+version),
		HaveField("Args", ContainElements("--leader-elect", "--worker-image=kafkasend/portal:"+version,
			"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081")),
	)))
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: saName}, &corev1.ServiceAccount{})).To(Succeed())
	var role rbacv1.ClusterRole
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: managerRole}, &role)).To(Succeed())
	g.Expect(role.Rules).To(ContainElement(HaveField("APIGroups", ContainElement(kafkasendv1alpha1.GroupVersion.Group))))
	var binding rbacv1.ClusterRoleBinding
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "kafkasend-manager-rolebinding"}, &binding)).To(Succeed())
	g.Expect(binding.RoleRef.Name).To(Equal(managerRole))
	g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: saName, Namespace: releaseNamespace}))
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "kafkasend-leader-election-rolebinding"},
		&rbacv1.RoleBinding{})).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: deploymentName + "-metrics"},
		&corev1.Service{})).To(Succeed())

	t.Run("operator pods pass the restricted Pod Security Standard", func(t *testing.T) {
		checkRestricted(ctx, t, k8s, &dep)
	})

	// A user's first pipeline: the sample and the example in the notes are
	// accepted by the installed CRD.
	sample := readSample(t, h.root)
	sample.Namespace = "default"
	g.Expect(k8s.Create(ctx, sample)).To(Succeed())
	example := notesExample(t, notes)
	example.Namespace = "notes-example"
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: example.Namespace}})).To(Succeed())
	g.Expect(k8s.Create(ctx, example)).To(Succeed())

	t.Run("helm test's selftest", func(t *testing.T) {
		checkSelftest(ctx, t, k8s, kubeconfig, &dep)
	})

	// An upgrade changes the operator's flags, and a changed CRD reaches
	// the cluster.
	upgraded := chartWithChangedCRD(t, h.root)
	helm.mustRun(t, "upgrade", releaseName, upgraded, "--namespace", releaseNamespace,
		"--reuse-values", "--set", "watchNamespaces={default,team-a}", "--wait=false")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&dep), &dep)).To(Succeed())
	g.Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--watch-namespaces=default,team-a"))
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, crdKey, &crd)).To(Succeed())
		g.Expect(crd.Spec.Versions[0].AdditionalPrinterColumns).To(ContainElement(HaveField("Name", "Upgraded")),
			"helm upgrade did not update the CRD")
	}).Should(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sample), &kafkasendv1alpha1.PortalPipeline{})).To(Succeed(),
		"the upgrade lost a PortalPipeline")

	// Uninstalling removes the operator but keeps the CRD (crds.keep) and
	// so the users' pipelines.
	helm.mustRun(t, "uninstall", releaseName, "--namespace", releaseNamespace)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(&dep), &appsv1.Deployment{}))
	}).Should(BeTrue(), "the operator Deployment survived helm uninstall")
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: managerRole}, &rbacv1.ClusterRole{}))).To(BeTrue(),
		"the manager ClusterRole survived helm uninstall")
	g.Expect(k8s.Get(ctx, crdKey, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sample), &kafkasendv1alpha1.PortalPipeline{})).To(Succeed())
}

// checkRestricted has the API server's PodSecurity admission judge a pod
// made from the operator Deployment's template in a namespace enforcing the
// restricted standard (dry run: nothing is stored). A bare pod must be
// refused there, or the check would prove nothing.
func checkRestricted(ctx context.Context, t *testing.T, k8s client.Client, dep *appsv1.Deployment) {
	g := NewWithT(t)
	var ns corev1.Namespace
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: dep.Namespace}, &ns)).To(Succeed())
	patch := client.MergeFrom(ns.DeepCopy())
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	g.Expect(k8s.Patch(ctx, &ns, patch)).To(Succeed())

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: dep.Namespace, Name: "operator-psa-check", Labels: dep.Spec.Template.Labels},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	g.Expect(k8s.Create(ctx, pod, client.DryRunAll)).To(Succeed(), "the operator pod breaks the restricted standard")

	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: dep.Namespace, Name: "bare-psa-check"},
		Spec: corev1.PodSpec{
			ServiceAccountName: dep.Spec.Template.Spec.ServiceAccountName,
			Containers:         []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	err := k8s.Create(ctx, bare, client.DryRunAll)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "PodSecurity admission is not enforcing here: %v", err)
	g.Expect(err).To(MatchError(ContainSubstring("restricted")))
}

// readSample decodes the PortalPipeline in config/samples, refusing unknown
// fields so that a stale sample fails here.
func readSample(t *testing.T, root string) *kafkasendv1alpha1.PortalPipeline {
	t.Helper()
	path := filepath.Join(root, "config", "samples", "kafkasend_v1alpha1_portalpipeline.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the sample: %v", err)
	}
	var p kafkasendv1alpha1.PortalPipeline
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return &p
}

// notesExample decodes the PortalPipeline that helm install's notes tell the
// user to save and apply: the indented block from its apiVersion line to the
// next blank line.
func notesExample(t *testing.T, notes string) *kafkasendv1alpha1.PortalPipeline {
	t.Helper()
	var doc []string
	for _, line := range strings.Split(notes, "\n") {
		if len(doc) == 0 && !strings.HasPrefix(strings.TrimSpace(line), "apiVersion: kafkasend.io/") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			break
		}
		doc = append(doc, strings.TrimPrefix(line, "   "))
	}
	if len(doc) == 0 {
		t.Fatalf("no PortalPipeline example in helm install's notes:\n%s", notes)
	}
	var p kafkasendv1alpha1.PortalPipeline
	if err := yaml.UnmarshalStrict([]byte(strings.Join(doc, "\n")), &p); err != nil {
		t.Fatalf("decoding the notes' example: %v", err)
	}
	return &p
}

// chartWithChangedCRD copies the chart to a temporary folder and adds a
// printer column to its CRD, as a new release of the chart would.
func chartWithChangedCRD(t *testing.T, root string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "kafkasend")
	src := filepath.Join(root, "charts", "kafkasend")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, filepath.Join("templates", "crds")) {
			const cols = "  - additionalPrinterColumns:\n"
			if !strings.Contains(string(data), cols) {
				return fmt.Errorf("%s has no additionalPrinterColumns", rel)
			}
			data = []byte(strings.Replace(string(data), cols,
				cols+"    - jsonPath: .metadata.name\n      name: Upgraded\n      type: string\n", 1))
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatalf("copying the chart: %v", err)
	}
	return dst
}

// checkSelftest runs what the chart's `helm test` pod runs, `manager
// selftest`, against the API server: it must fail while the operator
// Deployment is not available (no kubelet runs here) and pass, with the
// PortalPipeline dry run, once its status says it is.
func checkSelftest(ctx context.Context, t *testing.T, k8s client.Client, kubeconfig string, dep *appsv1.Deployment) {
	g := NewWithT(t)
	bin := buildManager(t)
	selftest := func() (string, error) {
		cmd := exec.CommandContext(ctx, bin, "selftest", "--namespace="+dep.Namespace, "--deployment="+dep.Name, "--timeout=15s")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := selftest()
	g.Expect(err).To(HaveOccurred(), "selftest passed with no operator pod running:\n%s", out)
	g.Expect(out).To(ContainSubstring("is not available after 15s: its controller has not seen the latest spec yet"))

	var d appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), &d)).To(Succeed())
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "MinimumReplicasAvailable"}},
	}
	g.Expect(k8s.Status().Update(ctx, &d)).To(Succeed())
	out, err = selftest()
	g.Expect(err).NotTo(HaveOccurred(), "selftest:\n%s", out)
	g.Expect(out).To(And(ContainSubstring("is available"), ContainSubstring("accepts a PortalPipeline")))
	var list kafkasendv1alpha1.PortalPipelineList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(dep.Namespace))).To(Succeed())
	g.Expect(list.Items).To(BeEmpty(), "the dry run stored a PortalPipeline")
}
