package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of durations.
type Summary struct {
	N                        int
	Min, Max, Mean           time.Duration
	P50, P90, P95, P99, P999 time.Duration
}

// Summarize sorts a copy of samples and returns their summary; an empty
// sample gives the zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	return Summary{
		N: len(s), Min: s[0], Max: s[len(s)-1], Mean: time.Duration(sum / float64(len(s))),
		P50: percentileSorted(s, 50), P90: percentileSorted(s, 90), P95: percentileSorted(s, 95),
		P99: percentileSorted(s, 99), P999: percentileSorted(s, 99.9),
	}
}

// Percentile returns the p-th percentile (0 <= p <= 100) of samples by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are at or below it. It returns 0 for an empty sample.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	switch {
	case len(s) == 0:
		return 0
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// ms converts a duration to milliseconds rounded to 0.01 ms, as reported.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*100) / 100
}

// round2 rounds to two decimals.
func round2(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return math.Round(f*100) / 100
}

// ratio divides safely: 0 when the divisor is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round2(a / b)
}
