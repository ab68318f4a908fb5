package portal_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal/config"
)

// sendFast sends n fast jobs and returns their IDs.
func (e *env) sendFast(t *testing.T, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		j := job(fmt.Sprintf("/fast/%s-%d", prefix, i), []byte("x"))
		if err := e.req.Send(j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	return ids
}

func metric(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	return 0
}

// A worker joins while another runs long calls, then the first is stopped
// while they still run: partitions move without stopping the others, and
// the long calls are neither cancelled nor run twice.
func TestScaleOutAndStopHandOverRunningJobs(t *testing.T) {
	// The workers sign their handover records, as the operator sets them up.
	key := filepath.Join(t.TempDir(), "handover-key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 8*time.Second, 0, func(c *config.Config) {
		c.Kafka.SessionTimeout = metav1.Duration{Duration: 6 * time.Second}
		c.Kafka.HeartbeatInterval = metav1.Duration{Duration: time.Second}
		c.Handover = &config.Handover{KeyFile: key}
	})
	a := e.startProcess(t)
	slow := e.sendSlow(t, 12)

	// A second worker joins: some partitions move to it, with slow jobs of
	// the first worker still running there.
	b := e.startProcess(t)
	joinFast := e.sendFast(t, "join", 30)
	if m := e.col.Wait(joinFast, 10*time.Second); len(m) > 0 {
		t.Fatalf("%d of 30 fast jobs sent as a worker joined not answered within 10 s", len(m))
	}

	// The first worker is stopped: it leaves the group at once and answers
	// its running calls; the second owns everything meanwhile.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	stopFast := e.sendFast(t, "stop", 30)
	if m := e.col.Wait(stopFast, 10*time.Second); len(m) > 0 {
		t.Fatalf("%d of 30 fast jobs sent as a worker stopped not answered within 10 s", len(m))
	}
	select {
	case <-a.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("stopped worker still running 40 s after SIGTERM")
	}
	if a.err != nil {
		t.Fatalf("stopped worker exited with %v\n%s", a.err, a.logText())
	}
	if m := e.col.Wait(slow, 10*time.Second); len(m) > 0 {
		t.Fatalf("%d slow jobs not answered", len(m))
	}
	time.Sleep(3 * time.Second) // a re-execution or second answer would show by now
	for _, id := range append(append(slow, joinFast...), stopFast...) {
		if n := e.up.callsOf(id); n != 1 {
			t.Errorf("job %s executed %d times, want once", id, n)
		}
		if a, _ := e.col.Get(id); a.Response.Status != http.StatusOK {
			t.Errorf("job %s: %d %s %s", id, a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
		}
	}
	if d := e.col.Duplicates(); len(d) > 0 {
		t.Errorf("jobs answered twice: %v", d)
	}
	text := scrape(t, b.health)
	if n := metric(t, text, "kafkasend_portal_skipped_leased_total"); n == 0 {
		t.Error("the remaining worker never skipped a handed-over job: the hand-over was not exercised")
	}
	if n := metric(t, text, "kafkasend_portal_handover_records_ignored_total"); n != 0 {
		t.Errorf("the remaining worker ignored %v signed handover records", n)
	}
	// Where a job's time goes, for dashboards: Kafka's two legs.
	for _, name := range []string{"kafkasend_portal_record_delay_seconds_count", "kafkasend_portal_answer_ack_seconds_count"} {
		if n := metric(t, text, name); n < 30 {
			t.Errorf("%s = %v after the remaining worker answered at least 30 jobs", name, n)
		}
	}
	if n := metric(t, text, "kafkasend_portal_jobs_reexecuted_total"); n != 0 {
		t.Errorf("%v handed-over jobs re-executed although their worker lived", n)
	}
}

// Fresh owners killed soon after they join, over and over, do not erase
// what earlier owners committed as answered: the final owner runs only the
// job that was never answered.
func TestFreshOwnersKilledRepeatedlyKeepAnsweredJobs(t *testing.T) {
	e := newEnv(t, time.Minute, 0, func(c *config.Config) {
		c.Kafka.SessionTimeout = metav1.Duration{Duration: 6 * time.Second}
		c.Kafka.HeartbeatInterval = metav1.Duration{Duration: time.Second}
	})
	first := e.startProcess(t)
	slow := e.sendSlow(t, 1)
	fast := e.sendFast(t, "answered", 60)
	if m := e.col.Wait(fast, 15*time.Second); len(m) > 0 {
		t.Fatalf("%d fast jobs not answered", len(m))
	}
	time.Sleep(1500 * time.Millisecond) // one commit tick
	_ = first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.exited
	for i := range 3 {
		pr := e.startProcess(t)
		time.Sleep(2500 * time.Millisecond)
		_ = pr.cmd.Process.Signal(syscall.SIGKILL)
		<-pr.exited
		t.Logf("fresh owner %d killed 2.5 s after it joined", i+1)
	}
	e.startProcess(t)
	deadline := time.Now().Add(60 * time.Second)
	for e.up.callsOf(slow[0]) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	rerun := 0
	for _, id := range fast {
		if n := e.up.callsOf(id); n != 1 {
			rerun++
		}
	}
	if rerun > 0 {
		t.Errorf("%d of %d jobs committed as answered ran again", rerun, len(fast))
	}
	if n := e.up.callsOf(slow[0]); n < 2 {
		t.Errorf("the unanswered job ran %d times; its last owner should have run it again", n)
	}
}
