package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	_ "kafkasend.io/kafkasend/internal/testutil/kafkatest" // quiets sarama's metrics goroutines
)

func TestRunSmallWorkload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, &out, Options{SlowJobs: 2, FastJobs: 20, SlowDelay: 400 * time.Millisecond, FastDelay: 10 * time.Millisecond})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Sync.Fast) != 20 || len(rep.Async.Slow) != 2 || rep.Sync.Failed+rep.Async.Failed != 0 {
		t.Fatalf("report %+v: want every job answered", rep)
	}
	if rep.Sync.Peak != 1 {
		t.Errorf("sync phase had %d upstream calls at once, want 1", rep.Sync.Peak)
	}
	if rep.Async.Peak < 3 {
		t.Errorf("async phase had at most %d upstream calls at once, want the slow and fast ones together", rep.Async.Peak)
	}
	// Synchronously, some fast job waits for both slow ones (800ms); async,
	// none waits for a slow one.
	if s := rep.FastP95SpeedUp(); s < 2 {
		t.Errorf("fast p95 speed-up %.1fx, want at least 2x", s)
	}
	if rep.TokenRequests != 2 {
		t.Errorf("%d tokens fetched, want one per portal", rep.TokenRequests)
	}
	for _, want := range []string{"fast jobs p95", "slow jobs p99", "throughput", "peak in flight", "speed-up"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 95: 95, 99: 99, 100: 100, 0: 1} {
		if got := Percentile(d, p); got != want {
			t.Errorf("p%.0f = %d, want %d", p, got, want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestIsSlowSpreadsSlowJobs(t *testing.T) {
	n := 0
	for i := range 110 {
		if isSlow(i, 10, 110) {
			n++
		}
	}
	if n != 10 || !isSlow(0, 10, 110) || isSlow(1, 10, 110) {
		t.Fatalf("%d slow jobs of 110, want 10 starting with the first", n)
	}
}
