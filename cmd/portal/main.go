// Command portal is the kafkasend worker: it consumes chunked REST jobs from
// Kafka, calls the upstream API with bounded concurrency, and produces one
// response per job. The operator runs it with the configuration it renders
// from a PortalPipeline.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/rcrowley/go-metrics"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "portal:", err)
		os.Exit(1)
	}
}

func run() error {
	// sarama's go-metrics registry costs CPU on every request and nothing
	// reads it: the worker exports its own Prometheus metrics.
	metrics.UseNilMetrics = true
	var (
		configFile  string
		metricsAddr string
		healthAddr  string
		pprofAddr   string
		logLevel    string
		develLog    bool
		showVersion bool
	)
	flag.StringVar(&configFile, "config", "", "Path of the portal configuration file (YAML or JSON). Required.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":9090", "Address of /metrics.")
	flag.StringVar(&healthAddr, "health-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof/ profiles (off when empty). Serve it on loopback only: profiles show request data.")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error.")
	flag.BoolVar(&develLog, "log-development", false, "Human-readable logs instead of JSON.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	flag.Parse()
	if showVersion {
		fmt.Println(version.Line("portal"))
		return nil
	}
	if configFile == "" {
		flag.Usage()
		return fmt.Errorf("--config is required")
	}
	level, err := zapcore.ParseLevel(logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := zap.New(zap.Level(level), zap.UseDevMode(develLog)).WithName("portal")

	cfg, err := config.Load(configFile)
	if err != nil {
		return err
	}
	metrics := portal.NewMetrics()
	metrics.SetCapacity(cfg.Concurrency.MaxInFlight, cfg.Concurrency.MaxBytes)
	p, err := portal.New(cfg, portal.Options{Log: log, Metrics: metrics})
	if err != nil {
		return err
	}
	log.Info("Starting", "version", version.Get().Version, "revision", version.Get().Revision, "config", configFile)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// A server that cannot listen stops the portal: it would run unobserved.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	serveCtx, stopServing := context.WithCancel(context.Background())
	var servers errgroup.Group
	serve := func(addr string, h http.Handler) {
		servers.Go(func() error {
			err := portal.Serve(serveCtx, addr, h)
			if err != nil {
				cancelRun()
			}
			return err
		})
	}
	serve(healthAddr, p.Handler())
	if metricsAddr != healthAddr {
		serve(metricsAddr, p.Handler())
	}
	if pprofAddr != "" {
		serve(pprofAddr, profiles())
	}
	runErr := p.Run(runCtx)
	stopServing()
	if err := servers.Wait(); err != nil && runErr == nil {
		runErr = fmt.Errorf("serving health and metrics: %w", err)
	}
	return runErr
}

// profiles serves Go's runtime profiles under /debug/pprof/.
func profiles() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
