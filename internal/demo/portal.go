// Package demo runs kafkasend end to end in one process: an embedded
// Kafka-protocol broker (kfake), a loopback upstream API with slow and fast
// endpoints, an OAuth2 token endpoint, the portal worker, and a workload sent
// through the requester client, once with the old synchronous design
// (maxInFlight=1) and once with the portal's default concurrency. It needs
// no cluster, broker or network besides loopback.
//
// StartPortal is also what tests use to run a portal in-process.
package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
)

// RunningPortal is a portal worker running in this process.
type RunningPortal struct {
	Portal *portal.Portal
	cancel context.CancelFunc
	done   chan error
}

// StartPortal builds a portal from cfg, runs it, and returns once it has
// joined its consumer group (or fails after readyTimeout).
func StartPortal(cfg config.Config, opts portal.Options, readyTimeout time.Duration) (*RunningPortal, error) {
	p, err := portal.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating portal: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &RunningPortal{Portal: p, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !p.Ready() {
		select {
		case err := <-rp.done:
			cancel()
			if err == nil {
				err = errors.New("stopped before joining its group")
			}
			return nil, fmt.Errorf("running portal: %w", err)
		case <-deadline.C:
			_ = rp.Stop(30 * time.Second)
			return nil, fmt.Errorf("portal did not join group %s within %s", cfg.Kafka.ConsumerGroup, readyTimeout)
		case <-tick.C:
		}
	}
	return rp, nil
}

// Stop asks the portal to drain and stop, and waits up to timeout.
func (r *RunningPortal) Stop(timeout time.Duration) error {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("portal stopped with: %w", err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("portal did not stop within %s", timeout)
	}
}
