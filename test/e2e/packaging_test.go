package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	crdName = "portalpipelines.kafkasend.io"
	// envInstaller is dist/install.yaml as `make build-installer` wrote it
	// (hack/e2e.sh), with the images the cluster has imported.
	envInstaller = "KAFKASEND_E2E_INSTALLER"
	// markerColumn is the printer column the upgraded chart's CRD adds.
	markerColumn = "Topic"
)

// testHelmTest runs `helm test` on the installed release: the chart's
// selftest pod (the operator image) waits for the operator Deployment and
// has the API server validate a PortalPipeline (server-side dry run).
func testHelmTest(t *testing.T, c *cluster) {
	start := time.Now()
	out := c.helmRun(t, "test", releaseName, "-n", operatorNS, "--timeout", "3m")
	phases := regexp.MustCompile(`(?m)^Phase:\s+(\S+)`).FindAllStringSubmatch(out, -1)
	if !strings.Contains(out, releaseName+"-selftest") || len(phases) == 0 {
		t.Fatalf("helm test ran no selftest:\n%s", out)
	}
	for _, p := range phases {
		if p[1] != "Succeeded" {
			t.Errorf("helm test: a test hook ended %s:\n%s", p[1], out)
		}
	}
	t.Logf("helm test passed in %s:\n%s", time.Since(start).Round(100*time.Millisecond), out)
}

// chartWithCRDChange is a copy of the chart whose CRD has one more printer
// column (markerColumn, the requests topic): the chart of a release that
// changed its CRD.
func chartWithCRDChange(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafkasend")
	if err := os.CopyFS(dir, os.DirFS(chartPath)); err != nil {
		t.Fatal(err)
	}
	crd := filepath.Join(dir, "templates", "crds", "kafkasend.io_portalpipelines.yaml")
	b, err := os.ReadFile(crd)
	if err != nil {
		t.Fatal(err)
	}
	const at = "  - additionalPrinterColumns:\n"
	if bytes.Count(b, []byte(at)) != 1 {
		t.Fatalf("%s: want one %q", crd, at)
	}
	b = bytes.Replace(b, []byte(at), []byte(at+"    - jsonPath: .spec.topics.requests\n      name: "+markerColumn+"\n      type: string\n"), 1)
	if err := os.WriteFile(crd, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// liveColumns is the printer columns of the CRD on the cluster.
func (c *cluster) liveColumns(t *testing.T) string {
	t.Helper()
	return c.mustKubectl(t, "", "get", "crd", crdName, "-o", "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}")
}

// testCRDNotKept: with crds.keep=false the CRD goes with the release. A
// release installed again (same name and namespace) over the CRD an earlier
// uninstall kept adopts it; its uninstall then removes it.
func testCRDNotKept(t *testing.T, c *cluster) {
	c.helmRun(t, "install", releaseName, chartPath, "-n", operatorNS, "--wait", "--timeout", "2m",
		"--set", "crds.keep=false", "--set", "replicaCount=0", "--set", "tests.enabled=false")
	// Helm decides what to keep from the release's manifest. (Adopting the
	// kept CRD leaves its live resource-policy annotation in place; it has
	// no effect once the release no longer renders it.)
	manifest := c.helmRun(t, "get", "manifest", releaseName, "-n", operatorNS)
	if !strings.Contains(manifest, "name: "+crdName) || strings.Contains(manifest, "helm.sh/resource-policy") {
		t.Fatalf("with crds.keep=false the release should hold the CRD without helm.sh/resource-policy: keep:\n%s", manifest)
	}
	c.helmRun(t, "uninstall", releaseName, "-n", operatorNS, "--wait", "--timeout", "2m")
	c.waitFor(t, "the CRD removed by helm uninstall (crds.keep=false)", 2*time.Minute, func() (bool, string) {
		out, err := c.kubectl1(time.Minute, "", "get", "crd", crdName, "--ignore-not-found", "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", strings.TrimSpace(out)
	})
}

// installerManifest is dist/install.yaml with what this cluster needs that
// a real one does not: no kube-proxy here, so the manager is told the API
// server's address (as the chart's apiServer.host does).
func installerManifest(t *testing.T, c *cluster) string {
	t.Helper()
	path := os.Getenv(envInstaller)
	if path == "" {
		t.Fatalf("%s unset: hack/e2e.sh runs make build-installer", envInstaller)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var docs []string
	patched := false
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", path, err)
		}
		if obj == nil {
			continue
		}
		u := unstructured.Unstructured{Object: obj}
		if u.GetKind() == "Deployment" {
			containers, _, _ := unstructured.NestedSlice(obj, "spec", "template", "spec", "containers")
			for i, ct := range containers {
				m := ct.(map[string]any)
				if m["name"] != "manager" {
					continue
				}
				env, _ := m["env"].([]any)
				m["env"] = append(env,
					map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": c.nodeIP},
					map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": c.apiPort})
				containers[i] = m
				patched = true
			}
			if err := unstructured.SetNestedSlice(obj, containers, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if !patched {
		t.Fatalf("%s: no Deployment with a manager container", path)
	}
	return strings.Join(docs, "---\n")
}

// testInstaller: dist/install.yaml (make build-installer with the local
// images) applied with kubectl gives a Ready operator that runs a pipeline
// whose jobs are answered; kubectl delete -f removes it all, CRD included.
// It runs after the helm release is gone: the two never own the CRD at once.
func testInstaller(t *testing.T, c *cluster, u *upstream) {
	manifest := installerManifest(t, c)
	start := time.Now()
	c.mustKubectl(t, manifest, "apply", "-f", "-")
	c.mustKubectl(t, "", "-n", operatorNS, "rollout", "status", "deployment/kafkasend-controller-manager", "--timeout=150s")
	c.mustKubectl(t, "", "-n", operatorNS, "wait", "--for=condition=Available", "deployment/kafkasend-controller-manager", "--timeout=60s")
	t.Logf("kubectl apply -f dist/install.yaml: operator Ready after %s", time.Since(start).Round(100*time.Millisecond))
	image := c.mustKubectl(t, "", "-n", operatorNS, "get", "deployment/kafkasend-controller-manager", "-o",
		"jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[?(@.name==\"KAFKASEND_WORKER_IMAGE\")].value}")
	want := fmt.Sprintf("localhost/kafkasend/operator:%s localhost/kafkasend/portal:%s", c.imageTag, c.imageTag)
	if strings.TrimSpace(image) != want {
		t.Errorf("installer images: %q, want %q", image, want)
	}

	p := topics(t, c, "installed")
	start = time.Now()
	c.mustKubectl(t, p.oauthSecret("secret-2")+"---\n"+p.manifest(c, u, "installer"), "apply", "-f", "-")
	if _, err := c.kubectl1(3*time.Minute, "", "-n", pipelineNS, "wait", "--for=condition=Ready",
		"portalpipeline/"+p.name, "--timeout=150s"); err != nil {
		c.dump(t)
		t.Fatalf("pipeline not Ready under the installer's operator: %v", err)
	}
	t.Logf("pipeline Ready under the installer's operator after %s", time.Since(start).Round(100*time.Millisecond))
	rc := p.requester(t, c, 0)
	requireAllOK(t, c, "jobs under the installer's operator", awaitAll(rc, submitAll(t, rc,
		[]string{"/echo?id=inst-1", "/echo?id=inst-2", "/echo?id=inst-3"}), 2*time.Minute))
	_, _, revs, _, _, _ := u.snapshot()
	if revs["installer"] < 3 {
		t.Errorf("upstream calls with the installer pipeline's X-Rev: %d, want 3 (%v)", revs["installer"], revs)
	}

	c.mustKubectl(t, "", "-n", pipelineNS, "delete", "portalpipeline", p.name, "--timeout=2m")
	start = time.Now()
	if _, err := c.kubectl1(4*time.Minute, manifest, "delete", "-f", "-", "--timeout=3m"); err != nil {
		c.dump(t)
		t.Fatalf("kubectl delete -f dist/install.yaml: %v", err)
	}
	c.waitFor(t, "the installer's namespace, CRD and cluster roles gone", 3*time.Minute, func() (bool, string) {
		out, err := c.kubectl1(time.Minute, "", "get", "namespace/"+operatorNS, "crd/"+crdName, "--ignore-not-found", "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		left := strings.Fields(out)
		out, err = c.kubectl1(time.Minute, "", "get", "clusterroles,clusterrolebindings", "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		for _, o := range strings.Fields(out) {
			if strings.Contains(o, "kafkasend") {
				left = append(left, o)
			}
		}
		return len(left) == 0, "left: " + strings.Join(left, " ")
	})
	t.Logf("kubectl delete -f dist/install.yaml: everything gone after %s", time.Since(start).Round(100*time.Millisecond))
}
