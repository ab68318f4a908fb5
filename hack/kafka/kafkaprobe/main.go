// Command kafkaprobe is a helper for hack/kafka.sh.
//
//	kafkaprobe ports N               print N free TCP ports on 127.0.0.1, one a line
//	kafkaprobe wait [-timeout D] ADDR  wait until a metadata request to ADDR succeeds
//
// "wait" exits 0 once the broker at ADDR answers a metadata request that lists
// at least one broker and a controller, and 1 when the timeout passes first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "kafkaprobe: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: kafkaprobe ports N | kafkaprobe wait [-timeout D] ADDR")
	}
	switch args[0] {
	case "ports":
		return freePorts(args[1:])
	case "wait":
		return wait(args[1:])
	default:
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}

// freePorts prints n ports that were free on 127.0.0.1. All listeners stay
// open until every port is chosen, so the n ports differ.
func freePorts(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: kafkaprobe ports N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 16 {
		return fmt.Errorf("parsing port count %q: want 1..16", args[0])
	}
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listening on a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	fmt.Println(strings.Join(ports, "\n"))
	return nil
}

// wait polls addr with metadata requests until one succeeds or the timeout passes.
func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: kafkaprobe wait [-timeout D] ADDR")
	}
	addr := fs.Arg(0)
	metrics.UseNilMetrics = true

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var last error
	for {
		last = probe(addr)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no metadata from %s within %s: %w", addr, *timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probe makes one metadata request to addr and checks the answer.
func probe(addr string) error {
	cfg := sarama.NewConfig()
	cfg.ClientID = "kafkaprobe"
	cfg.Version = sarama.V2_1_0_0
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Net.ReadTimeout = 5 * time.Second
	cfg.Net.WriteTimeout = 5 * time.Second
	cfg.Metadata.Retry.Max = 0
	cfg.Metadata.Full = false

	b := sarama.NewBroker(addr)
	if err := b.Open(cfg); err != nil {
		return fmt.Errorf("opening connection: %w", err)
	}
	defer b.Close()
	resp, err := b.GetMetadata(&sarama.MetadataRequest{Version: 7})
	if err != nil {
		return fmt.Errorf("requesting metadata: %w", err)
	}
	if len(resp.Brokers) == 0 {
		return errors.New("metadata lists no broker yet")
	}
	if resp.ControllerID < 0 {
		return errors.New("metadata names no controller yet")
	}
	return nil
}
