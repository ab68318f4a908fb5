package controllers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rcrowley/go-metrics"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// The envtest suite runs a real kube-apiserver and etcd, plus a real
// kube-controller-manager with the garbage collector, Deployment and
// ReplicaSet controllers, built by hack/envtest-assets.sh. Lag is measured
// against a real Kafka-protocol broker: Apache Kafka when
// KAFKASEND_TEST_BROKERS is set, else an in-process kfake cluster.

var (
	k8sClient client.Client
	cfg       *rest.Config
	brokers   []string
	// envtestSkip is why the envtest tests cannot run here, if they cannot.
	envtestSkip string
	// secretGets records every Secret the operator reads.
	secretGets = &countingReader{}
	// metricsPort is where the suite's reconciler reads workers' /metrics
	// (on their pod IPs); tests listen there on loopback addresses.
	testMetricsPort int
	// suiteReconciler is the reconciler the manager runs.
	suiteReconciler *PortalPipelineReconciler
)

// countingReader records the Secrets read through it.
type countingReader struct {
	client.Reader
	mu   sync.Mutex
	gets []client.ObjectKey
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		c.mu.Lock()
		c.gets = append(c.gets, key)
		c.mu.Unlock()
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

func (c *countingReader) secretsRead() []client.ObjectKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.ObjectKey(nil), c.gets...)
}

const workerImage = "kafkasend/portal:test"

func TestMain(m *testing.M) {
	metrics.UseNilMetrics = true
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		matches, _ := filepath.Glob(filepath.Join("..", "bin", "k8s", "*", "kube-apiserver"))
		if len(matches) > 0 {
			assets = filepath.Dir(matches[len(matches)-1])
		}
	}
	if assets == "" {
		envtestSkip = "no envtest assets: run hack/envtest-assets.sh (make test does)"
		if os.Getenv("KAFKASEND_REQUIRE_ENVTEST") == "1" {
			fmt.Fprintln(os.Stderr, envtestSkip)
			return 1
		}
		return m.Run()
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()

	stopKCM, err := startControllerManager(env, assets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting kube-controller-manager:", err)
		return 1
	}
	defer stopKCM()

	if env := os.Getenv("KAFKASEND_TEST_BROKERS"); env != "" {
		brokers = strings.Split(env, ",")
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting kfake:", err)
			return 1
		}
		defer c.Close()
		brokers = c.ListenAddrs()
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kafkasendv1alpha1.AddToScheme(scheme))
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "creating client:", err)
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating manager:", err)
		return 1
	}
	// A loopback port no test server uses yet, for the workers' metrics.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reserving a port:", err)
		return 1
	}
	testMetricsPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	secretGets.Reader = mgr.GetAPIReader()
	suiteReconciler = &PortalPipelineReconciler{
		Client: mgr.GetClient(), Scheme: scheme, WorkerImage: workerImage,
		Lag:       KafkaLagSource{Timeout: 5 * time.Second},
		APIReader: secretGets, MetricsPort: testMetricsPort,
	}
	if err := suiteReconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "setting up controller:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return code
}

func zapLevel() zapcore.Level {
	if os.Getenv("KAFKASEND_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// startControllerManager runs kube-controller-manager against the envtest
// API server with the controllers the tests rely on.
func startControllerManager(env *envtest.Environment, assets string) (func(), error) {
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "kcm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kafkasend-kcm-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+path,
		"--controllers=garbagecollector,deployment,replicaset",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--v=0",
	)
	logFile, err := os.Create(filepath.Join(dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		b, _ := os.ReadFile(logFile.Name())
		return nil, fmt.Errorf("exited at once: %s", lastLines(string(b), 20))
	case <-time.After(2 * time.Second):
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		os.RemoveAll(dir)
	}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func requireEnvtest(t *testing.T) {
	t.Helper()
	if envtestSkip != "" {
		t.Skip(envtestSkip)
	}
}
