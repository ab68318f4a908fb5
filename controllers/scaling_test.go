package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
)

func TestRawRecommendation(t *testing.T) {
	at := func(backlog int64, parts int32) scaleInput {
		return scaleInput{known: true, backlog: backlog, partitions: parts, current: 1, min: 0, max: 5, target: 100}
	}
	with := func(in scaleInput, f func(*scaleInput)) scaleInput { f(&in); return in }
	cases := []struct {
		name string
		in   scaleInput
		want int32
	}{
		{"nothing waiting scales to min 0", at(0, 6), 0},
		{"nothing waiting keeps min", with(at(0, 6), func(in *scaleInput) { in.min = 2 }), 2},
		{"one long call behind answered jobs needs one replica", at(1, 6), 1},
		{"rounds up against a replica's capacity", at(101, 6), 2},
		{"capped by max", with(at(10_000, 12), func(in *scaleInput) { in.min = 1 }), 5},
		{"capped by partitions", with(at(2_000, 3), func(in *scaleInput) { in.max = 10 }), 3},
		{"min wins over partitions", with(at(10_000, 2), func(in *scaleInput) { in.min, in.max = 4, 10 }), 4},
		{"at zero, a backlog at the activation threshold stays at zero", with(at(5, 6), func(in *scaleInput) { in.current, in.activation = 0, 5 }), 0},
		{"at zero, a backlog above the activation threshold starts", with(at(6, 6), func(in *scaleInput) { in.current, in.activation = 0, 5 }), 1},
		{"running, the activation threshold does not apply", with(at(3, 6), func(in *scaleInput) { in.activation = 5 }), 1},
		{"unknown backlog holds current", scaleInput{current: 4, min: 1, max: 10, target: 100}, 4},
		{"unknown backlog clamps current", scaleInput{current: 40, min: 1, max: 10, target: 100}, 10},
		{"unknown backlog starts at one", scaleInput{current: -1, min: 0, max: 10, target: 100}, 1},
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
	in := func(at time.Duration, current int32, backlog int64) scaleInput {
		return scaleInput{now: t0.Add(at), current: current, known: true, backlog: backlog, partitions: 10,
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
