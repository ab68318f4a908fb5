// Package e2e drives the operator on a real single-node Kubernetes cluster as
// a user would: `helm install` of the chart with locally built images,
// `kubectl apply` of PortalPipelines and Secrets, `kubectl wait`, jobs sent
// with the `kafkasend` CLI and the requester library to a real Apache Kafka
// broker, answered by worker pods that call an upstream and a token endpoint
// served by this test process on the cluster's bridge address.
//
// The cluster, the broker and the binaries come from hack/e2e.sh (`make
// e2e`), which sets KAFKASEND_E2E=1 and the settings below; without them the
// cluster tests skip with a message saying so (and fail when
// KAFKASEND_REQUIRE_E2E=1).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	_ "kafkasend.io/kafkasend/internal/testutil/kafkatest" // quiets sarama's metrics

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Settings hack/e2e.sh passes.
const (
	envE2E        = "KAFKASEND_E2E"
	envRequire    = "KAFKASEND_REQUIRE_E2E"
	envKubectl    = "KAFKASEND_E2E_KUBECTL"
	envHelm       = "KAFKASEND_E2E_HELM"
	envKafkasend  = "KAFKASEND_E2E_KAFKASEND"
	envBrokers    = "KAFKASEND_E2E_BROKERS"
	envNodeIP     = "KAFKASEND_E2E_NODE_IP"
	envAPIPort    = "KAFKASEND_E2E_API_PORT"
	envImageTag   = "KAFKASEND_E2E_IMAGE_TAG"
	envKubeconfig = "KUBECONFIG"
)

// cluster is what a test needs to reach the test cluster.
type cluster struct {
	kubeconfig string
	kubectl    string
	helm       string
	kafkasend  string
	brokers    []string
	nodeIP     string
	apiPort    string
	imageTag   string

	kube *kubernetes.Clientset
	ctrl client.Client
}

// needCluster returns the cluster that hack/e2e.sh started, or skips (fails
// with KAFKASEND_REQUIRE_E2E=1) when the test runs without one.
func needCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv(envE2E) != "1" {
		msg := "no test cluster: the e2e tests run with `make e2e` (hack/e2e.sh), which starts a real single-node cluster and sets " + envE2E + "=1"
		if os.Getenv(envRequire) == "1" {
			t.Fatalf("%s (%s=1)", msg, envRequire)
		}
		t.Skip(msg)
	}
	c := &cluster{
		kubeconfig: os.Getenv(envKubeconfig),
		kubectl:    os.Getenv(envKubectl),
		helm:       os.Getenv(envHelm),
		kafkasend:  os.Getenv(envKafkasend),
		nodeIP:     os.Getenv(envNodeIP),
		apiPort:    os.Getenv(envAPIPort),
		imageTag:   os.Getenv(envImageTag),
	}
	for _, b := range strings.Split(os.Getenv(envBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	var missing []string
	for name, v := range map[string]string{
		envKubeconfig: c.kubeconfig, envKubectl: c.kubectl, envHelm: c.helm, envKafkasend: c.kafkasend,
		envBrokers: strings.Join(c.brokers, ","), envNodeIP: c.nodeIP, envAPIPort: c.apiPort, envImageTag: c.imageTag,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s=1 but %v unset: run the suite through hack/e2e.sh", envE2E, missing)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatalf("loading %s: %v", c.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("client for %s: %v", c.kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := kafkasendv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if c.ctrl, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatalf("controller-runtime client: %v", err)
	}
	return c
}

// cleanEnv is the test's environment without the KAFKASEND_* and KUBECONFIG
// settings of whoever runs it, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KAFKASEND_") || strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "HELM_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// run runs a command with a timeout and returns its stdout; stderr is part
// of the error.
func run(timeout time.Duration, stdin string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// kubectl runs kubectl against the test cluster.
func (c *cluster) kubectl1(timeout time.Duration, stdin string, args ...string) (string, error) {
	return run(timeout, stdin, cleanEnv(), c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
}

// mustKubectl runs kubectl and fails the test (with diagnostics) on error.
func (c *cluster) mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.kubectl1(2*time.Minute, stdin, args...)
	if err != nil {
		c.dump(t)
		t.Fatal(err)
	}
	return out
}

// helmRun runs helm against the test cluster.
func (c *cluster) helmRun(t *testing.T, args ...string) string {
	t.Helper()
	env := cleanEnv("HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := run(3*time.Minute, "", env, c.helm, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if err != nil {
		c.dump(t)
		t.Fatal(err)
	}
	return out
}

// dump logs what a user would look at when something does not come up:
// pods, events, pipelines, and the logs of every container (the previous
// instance too, for restarted ones).
func (c *cluster) dump(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"get", "nodes,pods,deployments,replicasets", "-A", "-o", "wide"},
		{"get", "portalpipelines", "-A", "-o", "wide"},
		{"get", "portalpipelines", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status}{\"\\n\"}{end}"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, err := c.kubectl1(30*time.Second, "", args...)
		t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
	}
	for _, ns := range []string{operatorNS, pipelineNS} {
		pods, err := c.kubectl1(30*time.Second, "", "get", "pods", "-n", ns, "-o", "name")
		if err != nil {
			continue
		}
		for _, pod := range strings.Fields(pods) {
			out, _ := c.kubectl1(30*time.Second, "", "logs", "-n", ns, pod, "--all-containers", "--tail=40")
			t.Logf("logs of %s/%s:\n%s", ns, pod, out)
			if prev, err := c.kubectl1(30*time.Second, "", "logs", "-n", ns, pod, "--all-containers", "--previous", "--tail=20"); err == nil {
				t.Logf("logs of the previous %s/%s:\n%s", ns, pod, prev)
			}
		}
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitFor polls cond every interval until it returns true, or fails the test
// after timeout with what it was waiting for, the last state cond reported,
// and the cluster's diagnostics.
func (c *cluster) waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	start := time.Now()
	var last string
	for {
		ok, state := cond()
		if ok {
			t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if state != last && state != "" {
			last = state
		}
		if time.Now().After(deadline) {
			c.dump(t)
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
