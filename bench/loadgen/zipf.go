package loadgen

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Zipf picks tenant ranks 0..n-1 with probability ∝ 1/(rank+1)^s. Unlike math/rand's Zipf it
// accepts any s ≥ 0 (s = 0 is uniform) and a small, fixed n. It is read-only after
// [NewZipf], so workers share one and bring their own random source.
type Zipf struct {
	cdf []float64 // cdf[i] = P(rank ≤ i); the last is 1
}

// NewZipf returns the distribution over n ≥ 1 ranks with skew s ≥ 0.
func NewZipf(n int, s float64) *Zipf {
	n = max(n, 1)
	cdf := make([]float64, n)
	var sum float64
	for i := range n {
		sum += math.Pow(float64(i+1), -s)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	cdf[n-1] = 1 // no rounding gap above the last rank
	return &Zipf{cdf: cdf}
}

// Pick draws one rank.
func (z *Zipf) Pick(r *rand.Rand) int {
	u := r.Float64()
	return sort.SearchFloat64s(z.cdf, u) // first i with cdf[i] ≥ u
}

// Share is the probability of rank i.
func (z *Zipf) Share(i int) float64 {
	if i == 0 {
		return z.cdf[0]
	}
	return z.cdf[i] - z.cdf[i-1]
}

// N is the number of ranks.
func (z *Zipf) N() int { return len(z.cdf) }
