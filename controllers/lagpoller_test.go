package controllers

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"kafkasend.io/kafkasend/internal/lag"
)

// TestPollerReadings: the answer rate between two measurements gives the
// drain estimate; a failed measurement keeps the last figures with its
// error; only changes wake the reconcile.
func TestPollerReadings(t *testing.T) {
	g := NewWithT(t)
	lp := newLagPoller(nil)
	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	lp.entries[key] = &pollEntry{}
	t0 := time.Unix(1_000_000, 0)

	g.Expect(lp.record(key, lag.Result{Partitions: 4, Lag: 500, Backlog: 300, Settled: 1000}, nil, t0)).To(BeTrue(), "first reading")
	r := lp.latest(key)
	g.Expect(r.drain).To(BeNil(), "no rate after one measurement")

	// 200 answered in 10 s: 20/s; 200 waiting: 10 s to drain.
	g.Expect(lp.record(key, lag.Result{Partitions: 4, Lag: 400, Backlog: 200, Settled: 1200}, nil, t0.Add(10*time.Second))).To(BeTrue())
	r = lp.latest(key)
	g.Expect(r.rate).To(BeNumerically("~", 20, 0.001))
	g.Expect(*r.drain).To(Equal(10 * time.Second))

	g.Expect(lp.record(key, lag.Result{Partitions: 4, Lag: 400, Backlog: 200, Settled: 1200}, nil, t0.Add(20*time.Second))).To(BeFalse(), "unchanged: no reconcile")

	boom := errors.New("kafka: client has run out of available brokers")
	g.Expect(lp.record(key, lag.Result{}, boom, t0.Add(30*time.Second))).To(BeTrue(), "an error is a change")
	r = lp.latest(key)
	g.Expect(r.err).To(MatchError(boom))
	g.Expect(r.res.Backlog).To(Equal(int64(200)), "last known figures kept")
	g.Expect(lp.record(key, lag.Result{}, boom, t0.Add(40*time.Second))).To(BeFalse(), "the same error again: no reconcile")

	lp.forget(key)
	g.Expect(lp.latest(key)).To(BeNil())
}
