package packaging

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var (
	managerOnce sync.Once
	managerBin  string
	managerErr  error
)

// buildManager builds cmd/manager once per test run.
func buildManager(t *testing.T) string {
	t.Helper()
	managerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kafkasend-manager-")
		if err != nil {
			managerErr = err
			return
		}
		managerBin = filepath.Join(dir, "manager")
		if out, err := exec.Command("go", "build", "-o", managerBin, "kafkasend.io/kafkasend/cmd/manager").CombinedOutput(); err != nil {
			managerErr = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	if managerErr != nil {
		t.Fatal(managerErr)
	}
	return managerBin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSecureMetrics runs the manager with --metrics-secure (the chart's
// metrics.secure) against a real API server and scrapes it as Prometheus
// would: without a token it is refused (401), with the token of a
// ServiceAccount that may not GET /metrics too (403), and with one bound to
// the chart's metrics-reader rule it gets the metrics, build_info included.
func TestSecureMetrics(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	bin := buildManager(t)
	k8s, kubeconfig := startAPIServer(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The manager watches PortalPipelines: install the CRD.
	objs := render(t, newHelm(t), "--show-only", "templates/crds/kafkasend.io_portalpipelines.yaml")
	for _, o := range objs {
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		var crd apiextensionsv1.CustomResourceDefinition
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "portalpipelines.kafkasend.io"}, &crd)).To(Succeed())
		g.Expect(crd.Status.Conditions).To(ContainElement(And(
			HaveField("Type", apiextensionsv1.Established), HaveField("Status", apiextensionsv1.ConditionTrue))))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	metricsPort, probePort := freePort(t), freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--metrics-secure", fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort), "--worker-image=kafkasend/portal:test")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	g.Expect(cmd.Start()).To(Succeed())
	exited := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs.String())
		}
	})
	g.Eventually(func() error {
		select {
		case <-exited:
			return StopTrying("the manager exited")
		default:
		}
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(probePort) + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	}).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	ns := "monitoring"
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	token := func(name string) string {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		g.Expect(k8s.Create(ctx, sa)).To(Succeed())
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}
		g.Expect(k8s.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
		g.Expect(tr.Status.Token).NotTo(BeEmpty())
		return tr.Status.Token
	}
	scraper, nobody := token("prometheus"), token("nobody")
	// What the chart's <fullname>-metrics-reader ClusterRole grants.
	reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	g.Expect(k8s.Create(ctx, reader)).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "prometheus"}}})).To(Succeed())

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the manager's certificate is self-signed
	}}
	scrape := func(g Gomega, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(metricsPort)+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// The metrics server may start a moment after /readyz answers.
	g.Eventually(func(g Gomega) {
		code, _ := scrape(g, "")
		g.Expect(code).To(Equal(http.StatusUnauthorized), "scraped without a token")
	}).WithTimeout(30 * time.Second).Should(Succeed())
	code, _ := scrape(g, nobody)
	g.Expect(code).To(Equal(http.StatusForbidden), "scraped with a token that may not GET /metrics")
	g.Eventually(func(g Gomega) {
		code, body := scrape(g, scraper)
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(ContainSubstring("kafkasend_build_info{"))
		g.Expect(body).To(ContainSubstring("controller_runtime_"))
	}).WithTimeout(30*time.Second).Should(Succeed(), "the RBAC-bound scraper got no metrics")
}

func ptr[T any](v T) *T { return &v }

func TestMain(m *testing.M) {
	code := m.Run()
	if managerBin != "" {
		_ = os.RemoveAll(filepath.Dir(managerBin))
	}
	os.Exit(code)
}
