package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	deploymentName = "kafkasend-controller-manager"
	saName         = "kafkasend-controller-manager"
	managerRole    = "kafkasend-manager-role"
)

// appVersion is the chart's appVersion, the default image tag.
func appVersion(t testing.TB) string {
	t.Helper()
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "charts", "kafkasend", "Chart.yaml"))
	if err != nil {
		t.Fatalf("reading Chart.yaml: %v", err)
	}
	if err := yaml.Unmarshal(data, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("no appVersion in Chart.yaml (%v)", err)
	}
	return chart.AppVersion
}

// render renders the chart or fails the test.
func render(t testing.TB, h *helmCLI, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := h.template(extra...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// deployment returns the rendered operator Deployment and its manager container.
func deployment(t testing.TB, objs []*unstructured.Unstructured) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	o := only(t, objs, "Deployment")
	d := convert[appsv1.Deployment](t, o)
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no manager container", o.GetName())
	return nil, corev1.Container{}
}

// only returns the one object of a kind, failing the test if there are none
// or several.
func only(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() != kind {
			continue
		}
		if found != nil {
			t.Fatalf("several %ss rendered: %s and %s", kind, found.GetName(), o.GetName())
		}
		found = o
	}
	if found == nil {
		t.Fatalf("no %s rendered; kinds: %v", kind, kinds(objs))
	}
	return found
}

// checkWiring asserts what must hold whatever the values: the Deployment's
// selector matches its pods, the metrics Service selects those pods and
// targets a named container port, and every binding names the pods'
// ServiceAccount.
func checkWiring(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	d, c := deployment(t, objs)
	podLabels := labels.Set(d.Spec.Template.Labels)
	g.Expect(labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(podLabels)).To(BeTrue(),
		"Deployment selector %v does not match its pod labels %v", d.Spec.Selector.MatchLabels, podLabels)

	s := convert[corev1.Service](t, only(t, objs, "Service"))
	g.Expect(labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels)).To(BeTrue(), "metrics Service does not select the operator pods")
	g.Expect(s.Spec.Ports).To(HaveLen(1))
	g.Expect(s.Spec.Ports[0].TargetPort).To(Equal(intstr.FromString("metrics")))
	g.Expect(c.Ports).To(ContainElement(HaveField("Name", "metrics")))

	sa := d.Spec.Template.Spec.ServiceAccountName
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		if isHook(o) {
			checkHookBinding(t, g, objs, o)
			continue
		}
		b := convert[rbacv1.RoleBinding](t, o)
		g.Expect(b.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: releaseNamespace}),
			"%s %s binds someone other than the pods' ServiceAccount", o.GetKind(), o.GetName())
		g.Expect(find(objs, b.RoleRef.Kind, b.RoleRef.Name)).NotTo(BeNil(), "%s %s refers to a missing %s %s",
			o.GetKind(), o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
	}
}

// isHook reports whether o is a Helm hook (the `helm test` objects).
func isHook(o *unstructured.Unstructured) bool {
	_, ok := o.GetAnnotations()["helm.sh/hook"]
	return ok
}

// withoutHooks drops the Helm hooks from a rendering.
func withoutHooks(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if !isHook(o) {
			out = append(out, o)
		}
	}
	return out
}

// checkHookBinding: a test hook's binding names the test pod's
// ServiceAccount, itself a test hook.
func checkHookBinding(t *testing.T, g Gomega, objs []*unstructured.Unstructured, o *unstructured.Unstructured) {
	t.Helper()
	b := convert[rbacv1.RoleBinding](t, o)
	g.Expect(b.Subjects).To(HaveLen(1))
	sa := find(objs, "ServiceAccount", b.Subjects[0].Name)
	g.Expect(sa).NotTo(BeNil(), "hook %s binds a missing ServiceAccount", o.GetName())
	g.Expect(isHook(sa)).To(BeTrue(), "hook %s binds a ServiceAccount that is not a hook", o.GetName())
}

// TestChartRBACMatchesKustomizeConfig fails when the chart's roles grant
// other permissions than config/rbac, whose manager role controller-gen
// derives from the controller's +kubebuilder:rbac markers.
func TestChartRBACMatchesKustomizeConfig(t *testing.T) {
	h := newHelm(t)
	objs := render(t, h)
	for _, tc := range []struct {
		file, kind, name string
	}{
		{"role.yaml", "ClusterRole", managerRole},
		{"leader_election_role.yaml", "Role", "kafkasend-leader-election-role"},
		{"portalpipeline_editor_role.yaml", "ClusterRole", "kafkasend-portalpipeline-editor-role"},
		{"portalpipeline_viewer_role.yaml", "ClusterRole", "kafkasend-portalpipeline-viewer-role"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			g := NewWithT(t)
			data, err := os.ReadFile(filepath.Join(h.root, "config", "rbac", tc.file))
			g.Expect(err).NotTo(HaveOccurred())
			var want rbacv1.ClusterRole
			g.Expect(yaml.Unmarshal(data, &want)).To(Succeed())
			g.Expect(want.Kind).To(Equal(tc.kind), "config/rbac/%s", tc.file)
			g.Expect(want.Rules).NotTo(BeEmpty(), "config/rbac/%s has no rules", tc.file)

			o := find(objs, tc.kind, tc.name)
			g.Expect(o).NotTo(BeNil(), "the chart renders no %s %s", tc.kind, tc.name)
			got := convert[rbacv1.ClusterRole](t, o)
			g.Expect(diffPermissions(want.Rules, got.Rules)).To(BeEmpty(),
				"%s %s in charts/kafkasend drifted from config/rbac/%s (+ only in the chart, - missing from the chart)",
				tc.kind, tc.name, tc.file)
			for k, v := range want.Labels {
				if strings.HasPrefix(k, "rbac.authorization.k8s.io/") {
					g.Expect(got.Labels).To(HaveKeyWithValue(k, v), "aggregation label")
				}
			}
		})
	}
}

// TestDiffPermissions shows that the drift check ignores how rules are
// written but not what they grant.
func TestDiffPermissions(t *testing.T) {
	g := NewWithT(t)
	base := []rbacv1.PolicyRule{
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
	}
	reworded := []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"list"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"patch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
	}
	g.Expect(diffPermissions(base, reworded)).To(BeEmpty())

	narrower := []rbacv1.PolicyRule{base[0], {APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}}
	g.Expect(diffPermissions(base, narrower)).To(Equal([]string{`- group="apps" resource=deployments name=* verb=list`}))

	wider := append([]rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}, base...)
	g.Expect(diffPermissions(base, wider)).To(Equal([]string{`+ group="" resource=secrets name=* verb=get`}))
}

// TestChartDefaults checks what `helm install` with no values creates.
func TestChartDefaults(t *testing.T) {
	g := NewWithT(t)
	h := newHelm(t)
	all := render(t, h)
	checkWiring(t, all)
	objs := withoutHooks(all)
	g.Expect(kinds(objs)).To(Equal(map[string]int{
		"CustomResourceDefinition": 1,
		"ServiceAccount":           1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
		"Service": 1, "Deployment": 1,
	}))
	// helm test: a pod running the operator image's selftest, with its RBAC.
	g.Expect(kinds(all)).To(HaveKeyWithValue("Pod", 1))
	pod := convert[corev1.Pod](t, only(t, all, "Pod"))
	g.Expect(pod.Annotations).To(HaveKeyWithValue("helm.sh/hook", "test"))
	g.Expect(pod.Spec.Containers).To(ConsistOf(And(
		HaveField("Image", "kafkasend/operator:"+appVersion(t)),
		HaveField("Args", ContainElements("selftest", "--namespace="+releaseNamespace, "--deployment="+deploymentName)))))
	crd := only(t, objs, "CustomResourceDefinition")
	g.Expect(crd.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))

	version := appVersion(t)
	d, c := deployment(t, objs)
	g.Expect(d.Namespace).To(Equal(releaseNamespace))
	g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
	g.Expect(c.Image).To(Equal("kafkasend/operator:" + version))
	g.Expect(c.Args).To(Equal([]string{
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--leader-elect",
		"--worker-image=kafkasend/portal:" + version,
		"--zap-log-level=info",
	}))
	g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(saName))
	g.Expect(find(objs, "ServiceAccount", saName)).NotTo(BeNil())

	// The restricted Pod Security Standard (the envtest install test has the
	// API server's PodSecurity admission judge it too).
	psc := d.Spec.Template.Spec.SecurityContext
	g.Expect(psc).NotTo(BeNil())
	g.Expect(psc.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(psc.SeccompProfile).To(HaveValue(HaveField("Type", corev1.SeccompProfileTypeRuntimeDefault)))
	g.Expect(c.SecurityContext).NotTo(BeNil())
	g.Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(c.SecurityContext.Capabilities).To(HaveValue(HaveField("Drop", ConsistOf(corev1.Capability("ALL")))))

	g.Expect(c.LivenessProbe).To(HaveValue(HaveField("HTTPGet", HaveValue(And(
		HaveField("Path", "/healthz"), HaveField("Port", intstr.FromString("health")))))))
	g.Expect(c.ReadinessProbe).To(HaveValue(HaveField("HTTPGet", HaveValue(And(
		HaveField("Path", "/readyz"), HaveField("Port", intstr.FromString("health")))))))
	g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "health"), HaveField("ContainerPort", BeEquivalentTo(8081)))))
	g.Expect(c.Resources.Requests).NotTo(BeEmpty())
	g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))

	crb := convert[rbacv1.ClusterRoleBinding](t, find(objs, "ClusterRoleBinding", "kafkasend-manager-rolebinding"))
	g.Expect(crb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: managerRole}))
	role := find(objs, "Role", "kafkasend-leader-election-role")
	g.Expect(role.GetNamespace()).To(Equal(releaseNamespace))
}

// TestChartValues checks that each documented value changes what it says.
func TestChartValues(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, g Gomega, objs []*unstructured.Unstructured)
	}{{
		name: "watchNamespaces joins into one flag and keeps cluster-wide RBAC",
		args: []string{"--set", "watchNamespaces={team-a,team-b}"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Args).To(ContainElement("--watch-namespaces=team-a,team-b"))
			g.Expect(find(objs, "ClusterRoleBinding", "kafkasend-manager-rolebinding")).NotTo(BeNil())
		},
	}, {
		name: "leader election off drops the flag and the Lease Role",
		args: []string{"--set", "leaderElection.enabled=false"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Args).NotTo(ContainElement(HavePrefix("--leader-elect")))
			g.Expect(kinds(objs)).NotTo(HaveKey("Role"))
			g.Expect(kinds(objs)).NotTo(HaveKey("RoleBinding"))
		},
	}, {
		name: "leader election namespace moves the Lease and its Role",
		args: []string{"--set", "leaderElection.namespace=leases"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Args).To(ContainElements("--leader-elect", "--leader-election-namespace=leases"))
			g.Expect(find(objs, "Role", "kafkasend-leader-election-role").GetNamespace()).To(Equal("leases"))
			g.Expect(find(objs, "RoleBinding", "kafkasend-leader-election-rolebinding").GetNamespace()).To(Equal("leases"))
		},
	}, {
		name: "images, replicas and log level",
		args: []string{"--set", "image.repository=reg.example/op,image.tag=v2,image.pullPolicy=Always",
			"--set", "workerImage.repository=reg.example/portal,workerImage.tag=v3",
			"--set", "replicaCount=3,logLevel=debug"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			d, c := deployment(t, objs)
			g.Expect(c.Image).To(Equal("reg.example/op:v2"))
			g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullAlways))
			g.Expect(c.Args).To(ContainElements("--worker-image=reg.example/portal:v3", "--zap-log-level=debug"))
			g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
		},
	}, {
		name: "an existing ServiceAccount is used and bound, not created",
		args: []string{"--set", "serviceAccount.create=false,serviceAccount.name=ops-operator"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			d, _ := deployment(t, objs)
			g.Expect(kinds(objs)).NotTo(HaveKey("ServiceAccount"))
			g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal("ops-operator"))
		},
	}, {
		name: "metrics port moves the flag, the container port and the Service",
		args: []string{"--set", "metrics.port=9090,metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Args).To(ContainElement("--metrics-bind-address=:9090"))
			g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "metrics"), HaveField("ContainerPort", BeEquivalentTo(9090)))))
			svc := convert[corev1.Service](t, find(objs, "Service", deploymentName+"-metrics"))
			g.Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(9090))

			sm := find(objs, "ServiceMonitor", deploymentName)
			g.Expect(sm).NotTo(BeNil())
			g.Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "prom"))
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			g.Expect(labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels))).To(BeTrue(), "ServiceMonitor does not select the metrics Service")
			endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			g.Expect(endpoints).To(ConsistOf(HaveKeyWithValue("port", "metrics")))
		},
	}, {
		name: "digests pin both images",
		args: []string{"--set", "image.digest=sha256:" + strings.Repeat("a", 64) + ",workerImage.digest=sha256:" + strings.Repeat("b", 64)},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Image).To(Equal("kafkasend/operator@sha256:" + strings.Repeat("a", 64)))
			g.Expect(c.Args).To(ContainElement("--worker-image=kafkasend/portal@sha256:" + strings.Repeat("b", 64)))
		},
	}, {
		name: "secure metrics: the flag, the auth RBAC and an HTTPS ServiceMonitor",
		args: []string{"--set", "metrics.secure=true,metrics.serviceMonitor.enabled=true"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			_, c := deployment(t, objs)
			g.Expect(c.Args).To(ContainElement("--metrics-secure"))
			auth := convert[rbacv1.ClusterRole](t, find(objs, "ClusterRole", "kafkasend-metrics-auth-role"))
			g.Expect(permissions(auth.Rules)).To(Equal([]string{
				`group="authentication.k8s.io" resource=tokenreviews name=* verb=create`,
				`group="authorization.k8s.io" resource=subjectaccessreviews name=* verb=create`,
			}))
			reader := convert[rbacv1.ClusterRole](t, find(objs, "ClusterRole", "kafkasend-metrics-reader"))
			g.Expect(permissions(reader.Rules)).To(Equal([]string{"nonResourceURL=/metrics verb=get"}))
			endpoints, _, _ := unstructured.NestedSlice(find(objs, "ServiceMonitor", deploymentName).Object, "spec", "endpoints")
			g.Expect(endpoints).To(ConsistOf(And(HaveKeyWithValue("scheme", "https"), HaveKey("bearerTokenFile"))))
		},
	}, {
		name: "crds.enabled=false leaves the CRD out; crds.keep=false drops the keep policy",
		args: []string{"--set", "crds.enabled=false"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			g.Expect(kinds(objs)).NotTo(HaveKey("CustomResourceDefinition"))
			objs = render(t, h, "--set", "crds.keep=false")
			g.Expect(only(t, objs, "CustomResourceDefinition").GetAnnotations()).NotTo(HaveKey("helm.sh/resource-policy"))
		},
	}, {
		name: "worker PodMonitor selects the operator's worker pods and labels them by pipeline",
		args: []string{"--set", "workerMetrics.podMonitor.enabled=true,watchNamespaces={team-a}"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			pm := only(t, objs, "PodMonitor")
			sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
			g.Expect(sel).To(Equal(map[string]string{
				"app.kubernetes.io/name": "kafkasend-portal", "app.kubernetes.io/managed-by": "kafkasend-operator"}))
			ns, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "namespaceSelector", "matchNames")
			g.Expect(ns).To(Equal([]string{"team-a"}))
			eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
			g.Expect(eps).To(ConsistOf(And(HaveKeyWithValue("port", "metrics"), HaveKeyWithValue("relabelings", ContainElement(
				HaveKeyWithValue("targetLabel", "pipeline"))))))
		},
	}, {
		name: "PrometheusRule holds config/prometheus/rules.yaml",
		args: []string{"--set", "prometheusRule.enabled=true,prometheusRule.labels.release=prom"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			pr := only(t, objs, "PrometheusRule")
			g.Expect(pr.GetLabels()).To(HaveKeyWithValue("release", "prom"))
			data, err := os.ReadFile(filepath.Join(h.root, "config", "prometheus", "rules.yaml"))
			g.Expect(err).NotTo(HaveOccurred())
			var want map[string]any
			g.Expect(yaml.Unmarshal(data, &want)).To(Succeed())
			g.Expect(pr.Object["spec"]).To(Equal(want), "the PrometheusRule's spec is not config/prometheus/rules.yaml")
		},
	}, {
		name: "Grafana dashboard ConfigMap with the sidecar label",
		args: []string{"--set", "grafanaDashboard.enabled=true,grafanaDashboard.namespace=monitoring"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			cm := convert[corev1.ConfigMap](t, only(t, objs, "ConfigMap"))
			g.Expect(cm.Namespace).To(Equal("monitoring"))
			g.Expect(cm.Labels).To(HaveKeyWithValue("grafana_dashboard", "1"))
			data, err := os.ReadFile(filepath.Join(h.root, "charts", "kafkasend", "files", "dashboard.json"))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cm.Data).To(HaveKeyWithValue("kafkasend.json", strings.TrimSuffix(string(data), "\n")))
		},
	}, {
		name: "apiServer.host reaches the manager and the helm test pod",
		args: []string{"--set", "apiServer.host=10.0.0.7,apiServer.port=6443"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			want := []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "10.0.0.7"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
			_, c := deployment(t, objs)
			g.Expect(c.Env).To(Equal(want))
			pod := convert[corev1.Pod](t, only(t, render(t, h, "--set", "apiServer.host=10.0.0.7,apiServer.port=6443"), "Pod"))
			g.Expect(pod.Spec.Containers[0].Env).To(Equal(want))
			pod = convert[corev1.Pod](t, only(t, render(t, h), "Pod"))
			g.Expect(pod.Spec.Containers[0].Env).To(BeEmpty())
		},
	}, {
		name: "tests.enabled=false renders no test pod",
		args: []string{"--set", "tests.enabled=false"},
		check: func(t *testing.T, g Gomega, _ []*unstructured.Unstructured) {
			g.Expect(kinds(render(t, h))).To(HaveKey("Pod"))
			g.Expect(kinds(render(t, h, "--set", "tests.enabled=false"))).NotTo(HaveKey("Pod"))
		},
	}, {
		name: "PodDisruptionBudget with maxUnavailable by default",
		args: []string{"--set", "podDisruptionBudget.enabled=true"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			pdb := convert[policyv1.PodDisruptionBudget](t, find(objs, "PodDisruptionBudget", deploymentName))
			d, _ := deployment(t, objs)
			g.Expect(pdb.Spec.MaxUnavailable).To(HaveValue(Equal(intstr.FromInt32(1))))
			g.Expect(pdb.Spec.MinAvailable).To(BeNil())
			g.Expect(labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels))).To(BeTrue())
		},
	}, {
		name: "PodDisruptionBudget with minAvailable",
		args: []string{"--set", "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1,replicaCount=2"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			pdb := convert[policyv1.PodDisruptionBudget](t, find(objs, "PodDisruptionBudget", deploymentName))
			g.Expect(pdb.Spec.MinAvailable).To(HaveValue(Equal(intstr.FromInt32(1))))
			g.Expect(pdb.Spec.MaxUnavailable).To(BeNil())
		},
	}, {
		name: "pod labels cannot break the selector",
		args: []string{"--set", "podLabels.team=a,podLabels.app\\.kubernetes\\.io/component=other",
			"--set", "podAnnotations.owner=platform"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			d, _ := deployment(t, objs)
			g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("team", "a"))
			g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("app.kubernetes.io/component", "operator"))
			g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("owner", "platform"))
		},
	}, {
		name: "scheduling values reach the pod",
		args: []string{"--set", "priorityClassName=critical,nodeSelector.disk=ssd",
			"--set", "tolerations[0].key=dedicated,tolerations[0].operator=Exists"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			d, _ := deployment(t, objs)
			spec := d.Spec.Template.Spec
			g.Expect(spec.PriorityClassName).To(Equal("critical"))
			g.Expect(spec.NodeSelector).To(Equal(map[string]string{"disk": "ssd"}))
			g.Expect(spec.Tolerations).To(ConsistOf(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists}))
		},
	}, {
		name: "fullnameOverride prefixes every name",
		args: []string{"--set", "fullnameOverride=ops"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			g.Expect(find(objs, "Deployment", "ops-controller-manager")).NotTo(BeNil())
			g.Expect(find(objs, "ClusterRole", "ops-manager-role")).NotTo(BeNil())
		},
	}, {
		name: "values-all.yaml turns everything on",
		args: []string{"-f", "test/packaging/testdata/values-all.yaml"},
		check: func(t *testing.T, g Gomega, objs []*unstructured.Unstructured) {
			g.Expect(kinds(objs)).To(HaveKey("ServiceMonitor"))
			g.Expect(kinds(objs)).To(HaveKey("PodDisruptionBudget"))
			_, c := deployment(t, objs)
			g.Expect(c.Args).To(ContainElements("--watch-namespaces=team-a,team-b", "--enable-http2"))
			g.Expect(c.Env).To(ContainElement(HaveField("Name", "GOMEMLIMIT")))
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, h, tc.args...)
			checkWiring(t, objs)
			tc.check(t, NewWithT(t), withoutHooks(objs))
		})
	}
}

// TestChartRejectsBadValues checks that mistakes fail the install with a
// message naming them, instead of being ignored.
func TestChartRejectsBadValues(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		set, want string
	}{
		{"replicaCount=two", "/replicaCount"},
		{"metrics.serviceMonitor.enable=true", "'enable' not allowed"},
		{"logLevel=verbose", "/logLevel"},
		{"watchNamespaces={Team_A}", "/watchNamespaces/0"},
		{"metrics.port=70000", "/metrics/port"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy"},
		{"serviceAccount.create=false", "serviceAccount.name is required"},
		{"image.digest=latest", "/image/digest"},
		{"workerMetrics.podMonitor.enable=true", "'enable' not allowed"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			_, err := h.template("--set", tc.set)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

// TestChartCRDsMatchConfig fails when the chart's CRD templates are not
// config/crd/bases as `make manifests` copies them: the rendered CRD must be
// the generated one plus the chart's labels and keep policy.
func TestChartCRDsMatchConfig(t *testing.T) {
	g := NewWithT(t)
	h := newHelm(t)
	objs := render(t, h)
	want, err := filepath.Glob(filepath.Join(h.root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(want).NotTo(BeEmpty())
	g.Expect(kinds(objs)).To(HaveKeyWithValue("CustomResourceDefinition", len(want)), "run make manifests")
	for _, p := range want {
		data, err := os.ReadFile(p)
		g.Expect(err).NotTo(HaveOccurred())
		var crd unstructured.Unstructured
		g.Expect(yaml.Unmarshal(data, &crd.Object)).To(Succeed())
		got := find(objs, "CustomResourceDefinition", crd.GetName())
		g.Expect(got).NotTo(BeNil(), "the chart renders no CRD %s: run make manifests", crd.GetName())
		g.Expect(got.Object["spec"]).To(Equal(crd.Object["spec"]), "the chart's CRD %s is stale: run make manifests", crd.GetName())
		ann := got.GetAnnotations()
		delete(ann, "helm.sh/resource-policy")
		g.Expect(ann).To(Equal(crd.GetAnnotations()))
		g.Expect(got.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"))
	}
}

// TestNewestBinary checks how the tests pick bin/helm-* and bin/k8s/*/.
func TestNewestBinary(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	for _, f := range []string{"helm-v3.9.0", "helm-v3.22.0", "helm-v3.30.0.tmp", "k8s/v1.36.0/kube-apiserver", "k8s/v1.37.2/kube-apiserver"} {
		p := filepath.Join(dir, f)
		g.Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		g.Expect(os.WriteFile(p, nil, 0o755)).To(Succeed())
	}
	g.Expect(os.WriteFile(filepath.Join(dir, "helm-v3.40.0"), nil, 0o644)).To(Succeed()) // not executable
	g.Expect(newestBinary(filepath.Join(dir, "helm-*"))).To(Equal(filepath.Join(dir, "helm-v3.22.0")))
	g.Expect(newestBinary(filepath.Join(dir, "k8s", "*", "kube-apiserver"))).To(Equal(filepath.Join(dir, "k8s", "v1.37.2", "kube-apiserver")))
	g.Expect(newestBinary(filepath.Join(dir, "kustomize-*"))).To(BeEmpty())
}
