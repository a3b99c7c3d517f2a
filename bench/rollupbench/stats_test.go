package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/bench/loadgen"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "empty", sorted: nil, p: 50, want: 0},
		{name: "one", sorted: []time.Duration{ms(7)}, p: 99, want: ms(7)},
		{name: "median of four is the second", sorted: []time.Duration{ms(1), ms(2), ms(3), ms(4)}, p: 50, want: ms(2)},
		{name: "p99 of 100", sorted: hundred, p: 99, want: ms(99)},
		{name: "p90 of 100", sorted: hundred, p: 90, want: ms(90)},
		{name: "p100 is the max", sorted: hundred, p: 100, want: ms(100)},
		{name: "tiny p is the min", sorted: hundred, p: 0.001, want: ms(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, percentile(tt.sorted, tt.p))
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	ds := []time.Duration{ms(30), ms(10), ms(20)}
	require.Equal(t, loadgen.Latency{Count: 3, Mean: ms(20), P50: ms(20), P90: ms(30), P99: ms(30), P999: ms(30), Max: ms(30)}, summarize(ds))
	require.Equal(t, loadgen.Latency{}, summarize(nil))
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	in := `# HELP abacus_rollup_events_total Events.
# TYPE abacus_rollup_events_total counter
abacus_rollup_events_total{result="duplicate"} 10044
abacus_rollup_events_total{result="inserted"} 989956
abacus_rollup_batch_seconds_count 109
abacus_rollup_partition_lag{partition="0",topic="a b"} 3 1700000000000
go_goroutines 42
`
	m, err := parseMetrics(strings.NewReader(in), "abacus_rollup_")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{
		`abacus_rollup_events_total{result="duplicate"}`:         10044,
		`abacus_rollup_events_total{result="inserted"}`:          989956,
		"abacus_rollup_batch_seconds_count":                      109,
		`abacus_rollup_partition_lag{partition="0",topic="a b"}`: 3,
	}, m)

	for _, bad := range []string{"abacus_rollup_x\n", "abacus_rollup_x{a=\"b\"}\n", "abacus_rollup_x one\n"} {
		_, err := parseMetrics(strings.NewReader(bad), "abacus_rollup_")
		require.Error(t, err, bad)
	}
}
