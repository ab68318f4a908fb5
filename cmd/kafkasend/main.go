// Command kafkasend is the requester's command-line client for kafkasend
// portals: send REST jobs over Kafka, await their answers, or run the
// self-contained demo or the benchmarks. See 'kafkasend --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rcrowley/go-metrics"

	"kafkasend.io/kafkasend/internal/cli"
)

func main() {
	// sarama's go-metrics registry is not used; keep it from running meters.
	metrics.UseNilMetrics = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Terminal: isTerminal(os.Stdout), StderrTerminal: isTerminal(os.Stderr),
	})
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
