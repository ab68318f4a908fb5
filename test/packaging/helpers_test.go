// Package packaging tests the operator's packaging: the Helm chart in
// charts/kafkasend renders what users configure, keeps its RBAC in step with
// the kustomize config in config/, and installs into a real API server.
package packaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	releaseName      = "kafkasend"
	releaseNamespace = "kafkasend-system"
	// chartDir is the chart, relative to the repository root.
	chartDir = "./charts/kafkasend"
	// requireEnv makes missing tools or envtest assets a failure, not a skip.
	requireEnv = "KAFKASEND_REQUIRE_ENVTEST"
)

// repoRoot is the module root: the nearest parent folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getting the working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// skipOrFail skips the test, or fails it when requireEnv is set.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s (%s=1)", msg, requireEnv)
	}
	t.Skip(msg)
}

// newestBinary returns the executable file matching pattern (a glob whose one
// "*" stands for a version such as v3.22.0) with the highest version, or ""
// if none matches.
func newestBinary(pattern string) string {
	star := strings.Index(pattern, "*")
	if star < 0 {
		return ""
	}
	prefix, suffix := pattern[:star], pattern[star+1:]
	matches, _ := filepath.Glob(pattern)
	var best string
	var bestVersion *utilversion.Version
	for _, m := range matches {
		v, err := utilversion.ParseSemantic(strings.TrimSuffix(strings.TrimPrefix(m, prefix), suffix))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(m); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		if bestVersion == nil || v.GreaterThan(bestVersion) {
			best, bestVersion = m, v
		}
	}
	return best
}

// helmCLI runs the helm binary the Makefile builds into bin/, isolated from
// the user's helm and kubectl configuration.
type helmCLI struct {
	path string
	root string
	env  []string
}

// newHelm finds bin/helm-*, skipping the test (or failing it when
// requireEnv is set) if there is none.
func newHelm(t testing.TB) *helmCLI {
	t.Helper()
	root := repoRoot(t)
	path := newestBinary(filepath.Join(root, "bin", "helm-*"))
	if path == "" {
		skipOrFail(t, "no helm in %s: run `make tools` (or hack/test-packaging.sh, which builds it)", filepath.Join(root, "bin"))
	}
	home := t.TempDir()
	return &helmCLI{path: path, root: root, env: []string{
		"HOME=" + home,
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		"KUBECACHEDIR=" + filepath.Join(home, "kube-cache"),
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
	}}
}

// withKubeconfig returns a copy of h that talks to the cluster in kubeconfig.
func (h *helmCLI) withKubeconfig(kubeconfig string) *helmCLI {
	c := *h
	c.env = append(append([]string(nil), h.env...), "KUBECONFIG="+kubeconfig)
	return &c
}

// run runs helm from the repository root and returns its standard output.
func (h *helmCLI) run(args ...string) (string, error) {
	cmd := exec.Command(h.path, args...)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), h.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// mustRun runs helm and fails the test if it fails.
func (h *helmCLI) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// template renders the chart as release "kafkasend" in "kafkasend-system"
// with extra helm arguments (e.g. "--set", "k=v").
func (h *helmCLI) template(extra ...string) ([]*unstructured.Unstructured, error) {
	args := append([]string{"template", releaseName, chartDir,
		"--namespace", releaseNamespace}, extra...)
	out, err := h.run(args...)
	if err != nil {
		return nil, err
	}
	return decodeObjects([]byte(out))
}

// decodeObjects splits a multi-document YAML stream into objects.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding manifests: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the object of the given kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// kinds counts the objects of each kind.
func kinds(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	return n
}

// convert turns an unstructured object into a typed one.
func convert[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out); err != nil {
		t.Fatalf("converting %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &out
}

// permissions expands RBAC rules into one sorted line per permission
// (group, resource, verb, resource name or non-resource URL), so that two
// rule lists compare equal exactly when they grant the same.
func permissions(rules []rbacv1.PolicyRule) []string {
	set := map[string]bool{}
	for _, r := range rules {
		for _, verb := range r.Verbs {
			for _, url := range r.NonResourceURLs {
				set[fmt.Sprintf("nonResourceURL=%s verb=%s", url, verb)] = true
			}
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					names := r.ResourceNames
					if len(names) == 0 {
						names = []string{"*"}
					}
					for _, name := range names {
						set[fmt.Sprintf("group=%q resource=%s name=%s verb=%s", group, res, name, verb)] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// diffPermissions lists what got grants that want does not ("+") and what
// want grants that got does not ("-").
func diffPermissions(want, got []rbacv1.PolicyRule) []string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, p := range permissions(want) {
		w[p] = true
	}
	for _, p := range permissions(got) {
		g[p] = true
	}
	var diff []string
	for p := range g {
		if !w[p] {
			diff = append(diff, "+ "+p)
		}
	}
	for p := range w {
		if !g[p] {
			diff = append(diff, "- "+p)
		}
	}
	sort.Strings(diff)
	return diff
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl == gl {
			continue
		}
		fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
		if shown++; shown == 10 {
			b.WriteString("...\n")
			break
		}
	}
	return b.String()
}
