package cli

import (
	"time"

	"github.com/spf13/cobra"

	"kafkasend.io/kafkasend/internal/demo"
)

func newDemoCommand(sio IO) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a portal, an upstream and a workload on an embedded broker, and compare sync with async",
		Long: `Runs kafkasend end to end in this process, with no cluster, broker or
network besides loopback: an embedded Kafka-protocol broker, an upstream API
with slow and fast endpoints behind an OAuth2 client-credentials token
endpoint, the portal worker, and a workload of slow and fast jobs sent with
the requester client. The workload runs twice: with maxInFlight=1 (the old
synchronous portal: one REST call at a time) and with the portal's default
concurrency. It ends with a table of latencies (p50/p95/p99 of fast and slow
jobs), throughput and peak in-flight calls for both, and the speed-up of the
fast jobs' p95.`,
		Example: `  kafkasend demo
  kafkasend demo --slow 20 --fast 400 --slow-delay 3s
  make demo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.SlowJobs < 0 || o.FastJobs < 0 || o.SlowJobs+o.FastJobs == 0 || o.SlowJobs+o.FastJobs > 100000 {
				return usageError{"--slow and --fast must be 0 or more, at least 1 and at most 100000 jobs in all"}
			}
			if o.SlowDelay <= 0 || o.FastDelay <= 0 || o.Concurrency < 1 {
				return usageError{"--slow-delay and --fast-delay must be positive, --concurrency at least 1"}
			}
			o.Live = sio.Terminal
			_, err := demo.Run(cmd.Context(), sio.Stdout, o)
			return err
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.IntVar(&o.SlowJobs, "slow", 10, "slow jobs per phase")
	fs.IntVar(&o.FastJobs, "fast", 100, "fast jobs per phase")
	fs.DurationVar(&o.SlowDelay, "slow-delay", 2*time.Second, "upstream latency of a slow job")
	fs.DurationVar(&o.FastDelay, "fast-delay", 50*time.Millisecond, "upstream latency of a fast job")
	fs.IntVar(&o.Concurrency, "concurrency", 100, "maxInFlight of the async phase")
	return cmd
}
