// Command manager runs the kafkasend operator: it reconciles PortalPipelines
// into portal worker Deployments and scales them on consumer lag.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/controllers"
	"kafkasend.io/kafkasend/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "selftest" {
		if err := selftest(context.Background(), os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr     string
		probeAddr       string
		leaderElect     bool
		leaderElectNS   string
		workerImage     string
		watchNamespaces string
		secureMetrics   bool
		enableHTTP2     bool
		printVersion    bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's).")
	flag.StringVar(&workerImage, "worker-image", envOr("KAFKASEND_WORKER_IMAGE", "kafkasend/portal:"+version.Get().Version),
		"Portal worker image for pipelines that name none (env KAFKASEND_WORKER_IMAGE).")
	flag.StringVar(&watchNamespaces, "watch-namespaces", envOr("KAFKASEND_WATCH_NAMESPACES", ""),
		"Comma-separated namespaces to watch; empty watches all (env KAFKASEND_WATCH_NAMESPACES).")
	flag.BoolVar(&secureMetrics, "metrics-secure", false,
		"Serve metrics over HTTPS (a self-signed certificate) to authenticated and authorised clients only: "+
			"the caller's bearer token is checked with a TokenReview and its right to GET /metrics with a SubjectAccessReview.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics server.")
	flag.BoolVar(&printVersion, "version", false, "Print the version and exit.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if printVersion {
		fmt.Println(version.Line("manager"))
		return nil
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kafkasendv1alpha1.AddToScheme(scheme))

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	cacheOpts := cache.Options{}
	if ns := splitList(watchNamespaces); len(ns) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, n := range ns {
			cacheOpts.DefaultNamespaces[n] = cache.Config{}
		}
	}

	metricsOpts := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		// Needs the tokenreviews and subjectaccessreviews create rights
		// (the chart's and config/default's metrics-auth ClusterRole).
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	if err := ctrlmetrics.Registry.Register(version.NewCollector()); err != nil {
		return fmt.Errorf("registering %s: %w", version.BuildInfoName, err)
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "kafkasend-operator.kafkasend.io",
		LeaderElectionNamespace:       leaderElectNS,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOpts,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := (&controllers.PortalPipelineReconciler{
		Client:      mgr.GetClient(),
		Scheme:      mgr.GetScheme(),
		WorkerImage: workerImage,
		Lag:         controllers.KafkaLagSource{},
		Namespaces:  splitList(watchNamespaces),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("Starting manager", "version", version.Get().Version, "revision", version.Get().Revision, "workerImage", workerImage, "watchNamespaces", watchNamespaces)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
