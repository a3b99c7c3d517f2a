package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOffsetIndex(t *testing.T) {
	t.Parallel()
	x := newOffsetIndex()
	// Partition 0: records at offsets 0, 1, 2 with 500, 500 and 120 events; partition 3 one
	// record at offset 0 with 10 events; partition 5 is empty.
	x.add(0, 0, 500)
	x.add(0, 1, 500)
	x.add(0, 2, 120)
	x.add(3, 0, 10)
	tests := []struct {
		p    int32
		next int64
		want int64
	}{
		{0, 0, 0}, {0, 1, 500}, {0, 2, 1000}, {0, 3, 1120}, {0, 99, 1120},
		{3, 0, 0}, {3, 1, 10}, {5, 4, 0},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, x.eventsBefore(tt.p, tt.next), "partition %d below %d", tt.p, tt.next)
	}
	require.Equal(t, int64(1010), x.eventsApplied(map[int32]int64{0: 2, 3: 1, 5: 0}))
}

func TestOffsetSample(t *testing.T) {
	t.Parallel()
	end := map[int32]int64{0: 3, 1: 2}
	claimed := offsetSample{next: map[int32]int64{0: 0, 1: 0}}
	require.False(t, claimed.progressed())
	require.False(t, claimed.reached(end))
	partly := offsetSample{next: map[int32]int64{0: 3, 1: 0}}
	require.True(t, partly.progressed())
	require.False(t, partly.reached(end))
	done := offsetSample{next: map[int32]int64{0: 3, 1: 2}}
	require.True(t, done.reached(end))
	require.False(t, offsetSample{next: map[int32]int64{0: 3}}.reached(end), "a partition without a row is not done")
}

func TestConsumerRun_Result(t *testing.T) {
	t.Parallel()
	x := newOffsetIndex()
	for o := range int64(10) {
		x.add(0, o, 1000)
		x.add(1, o, 1000)
	}
	started := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	run := &consumerRun{
		started: started,
		first:   offsetSample{at: started.Add(2 * time.Second), next: map[int32]int64{0: 2, 1: 0}},
		last:    offsetSample{at: started.Add(6 * time.Second), next: map[int32]int64{0: 10, 1: 10}},
		cpu:     cpuUse{Postgres: 3 * time.Second},
		metrics: map[string]float64{
			"abacus_rollup_batch_seconds_count":              9,
			`abacus_rollup_events_total{result="inserted"}`:  19_800,
			`abacus_rollup_events_total{result="duplicate"}`: 200,
		},
	}
	got := run.result(x)
	require.Equal(t, consumerResult{
		EventsPerSecond: 18_000.0 / 4, Window: 4 * time.Second, WindowEvents: 18_000, FirstCommitEvents: 2_000,
		StartToFirstCommit: 2 * time.Second, Transactions: 9, Inserted: 19_800, Duplicates: 200,
		CPU: cpuUse{Postgres: 3 * time.Second},
	}, got)
}
