package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
)

func TestRawRecommendation(t *testing.T) {
	lag := func(total int64, parts int32) *lagObservation {
		return &lagObservation{total: total, partitions: parts}
	}
	cases := []struct {
		name string
		in   scaleInput
		want int32
	}{
		{"no lag scales to min", scaleInput{lag: lag(0, 6), min: 0, max: 5, target: 100}, 0},
		{"no lag keeps min", scaleInput{lag: lag(0, 6), min: 2, max: 5, target: 100}, 2},
		{"rounds up", scaleInput{lag: lag(101, 6), min: 0, max: 5, target: 100}, 2},
		{"capped by max", scaleInput{lag: lag(10_000, 12), min: 1, max: 5, target: 100}, 5},
		{"capped by partitions", scaleInput{lag: lag(10_000, 3), min: 1, max: 10, target: 100}, 3},
		{"min wins over partitions", scaleInput{lag: lag(10_000, 2), min: 4, max: 10, target: 100}, 4},
		{"unknown lag holds current", scaleInput{current: 4, min: 1, max: 10, target: 100}, 4},
		{"unknown lag clamps current", scaleInput{current: 40, min: 1, max: 10, target: 100}, 10},
		{"unknown lag starts at one", scaleInput{current: -1, min: 0, max: 10, target: 100}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(rawRecommendation(tc.in)).To(Equal(tc.want))
		})
	}
}

func TestScaleDownWaitsForTheWindowButScaleUpDoesNot(t *testing.T) {
	g := NewWithT(t)
	var a autoscaler
	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	t0 := time.Unix(1_000_000, 0)
	in := func(at time.Duration, current int32, total int64) scaleInput {
		return scaleInput{now: t0.Add(at), current: current, lag: &lagObservation{total: total, partitions: 10},
			min: 1, max: 10, target: 10, window: time.Minute}
	}
	g.Expect(a.recommend(key, in(0, 1, 35))).To(Equal(int32(4)), "up at once")
	g.Expect(a.recommend(key, in(10*time.Second, 4, 5))).To(Equal(int32(4)), "down waits")
	g.Expect(a.recommend(key, in(50*time.Second, 4, 75))).To(Equal(int32(8)), "up again at once")
	g.Expect(a.recommend(key, in(80*time.Second, 8, 5))).To(Equal(int32(8)), "8 still inside the window")
	g.Expect(a.recommend(key, in(111*time.Second, 8, 5))).To(Equal(int32(1)), "window passed")
	a.forget(key)
	g.Expect(a.recommend(key, in(112*time.Second, 6, 5))).To(Equal(int32(6)), "a count set by hand is held for a window")
}
