package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMixedSmokeEmbedded runs the mixed scenario end to end (portal
// process, kfake, upstream) with tiny counts and latencies.
func TestMixedSmokeEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the portal process")
	}
	bin := filepath.Join(t.TempDir(), "portal")
	if out, err := exec.Command("go", "build", "-o", bin, "kafkasend.io/kafkasend/cmd/portal").CombinedOutput(); err != nil {
		t.Fatalf("building the portal: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	svg := filepath.Join(t.TempDir(), "mixed.svg")
	var stdout, stderr strings.Builder
	code := Main(ctx, []string{"--scenario", "mixed", "--embedded", "--json", "--portal-bin", bin,
		"--slow", "2", "--fast", "10", "--slow-ms", "400", "--fast-ms", "10", "--rate", "100",
		"--svg", svg}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res MixedResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line of stdout is not the JSON result: %v\n%s", err, stdout.String())
	}
	if res.Scenario != "mixed" || res.Broker != BrokerKfake || res.Jobs != 24 || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("result %+v: want 24 jobs on kfake, none lost or duplicated", res.Common)
	}
	// The synchronous run queues fast jobs behind slow ones; the async one does not.
	if res.Async.FastP95Ms <= 0 || res.Async.SlowP95Ms < 400 || res.Sync.FastP95Ms <= res.Async.FastP95Ms {
		t.Errorf("async fast p95 %v ms, slow p95 %v ms; sync fast p95 %v ms", res.Async.FastP95Ms, res.Async.SlowP95Ms, res.Sync.FastP95Ms)
	}
	if fi, err := os.Stat(svg); err != nil || fi.Size() < 1000 {
		t.Errorf("--svg wrote no drawing: %v", err)
	}
}
