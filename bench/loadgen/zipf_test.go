package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestZipf_Shares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		s    float64
	}{
		{name: "one tenant", n: 1, s: 1.1},
		{name: "uniform", n: 4, s: 0},
		{name: "default skew", n: 8, s: DefaultZipfS},
		{name: "steep", n: 5, s: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z := NewZipf(tt.n, tt.s)
			require.Equal(t, tt.n, z.N())
			var sum float64
			for i := range tt.n {
				sum += z.Share(i)
				if i > 0 {
					require.LessOrEqual(t, z.Share(i), z.Share(i-1)+1e-12, "shares do not grow with the rank")
				}
			}
			require.InDelta(t, 1, sum, 1e-9)
			if tt.s == 0 {
				for i := range tt.n {
					require.InDelta(t, 1/float64(tt.n), z.Share(i), 1e-12)
				}
			}
			if tt.n > 1 && tt.s > 0 {
				require.InDelta(t, z.Share(0)/z.Share(1), math.Pow(2, tt.s), 1e-9, "share ∝ 1/(rank+1)^s")
			}

			rng := rand.New(rand.NewPCG(42, uint64(tt.n)))
			const draws = 200_000
			counts := make([]int, tt.n)
			for range draws {
				counts[z.Pick(rng)]++
			}
			for i, c := range counts {
				require.InDelta(t, z.Share(i), float64(c)/draws, 0.01, "rank %d", i)
			}
		})
	}
}
