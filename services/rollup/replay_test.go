package rollup_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
)

// TestConsumer_ReplayChangesNothing is the replay proof: reading records
// again, however it happens, changes no rollup.
//
//  1. 5 % of the events are produced again by a fresh producer, as a
//     client retrying after a lost acknowledgement does. Kafka's
//     idempotence cannot catch these (a new producer, new records); every
//     one of them must be a duplicate.
//  2. The group's Kafka commits are rewound to the start, and then
//     deleted, between restarts: each new member starts from the
//     database's offsets and reads nothing twice.
//  3. A second group reads the whole log from the start: every event is
//     a duplicate and the rollups do not move.
func TestConsumer_ReplayChangesNothing(t *testing.T) {
	t.Parallel()
	events := 10_000
	if *long {
		events = 100_000
	}
	env := rolluptest.NewEnv(t, 4)
	const group = "replay"
	work := rolluptest.NewWorkload(3, 20, events, 50, 10)
	require.NoError(t, rolluptest.ProduceAll(t.Context(), env.RecordProducer(t), work.Batches, 4, nil))
	records := len(work.Batches)

	first := env.Start(t, rollup.Config{Group: group}, nil)
	env.RequireBucketsWithin(t, work.Want(), work.Keys(), 2*rolluptest.Wait)
	requireMetric(t, first, float64(work.Distinct()), mEvents, "result", "inserted")

	// 1. Retries from a fresh producer.
	retries := work.Retries(0.05)
	require.NoError(t, rolluptest.ProduceAll(t.Context(), env.RecordProducer(t), retries, 4, nil))
	records += len(retries)
	requireMetric(t, first, float64(rolluptest.CountEvents(retries)), mEvents, "result", "duplicate")
	requireMetric(t, first, float64(records), mRecords, "result", "ok")
	env.RequireBuckets(t, work.Want(), work.Keys())
	require.Equal(t, float64(work.Distinct()), first.Metric(mEvents, "result", "inserted"))
	first.Stop(t)

	// 2. Kafka commits rewound, then deleted.
	adm := kadm.NewClient(env.AdminClient(t))
	want, keys := work.Want(), work.Keys()
	for i, tamper := range []struct {
		name string
		do   func(t *testing.T)
	}{
		{"rewound to the start", func(t *testing.T) {
			var os kadm.Offsets
			for p := range env.Partitions {
				os.AddOffset(eventlog.Topic, p, 0, -1)
			}
			require.NoError(t, adm.CommitAllOffsets(t.Context(), group, os))
		}},
		{"deleted", func(t *testing.T) {
			var ts kadm.TopicsSet
			for p := range env.Partitions {
				ts.Add(eventlog.Topic, p)
			}
			resp, err := adm.DeleteOffsets(t.Context(), group, ts)
			require.NoError(t, err)
			require.NoError(t, resp.Error())
		}},
	} {
		tamper.do(t)
		r := env.Start(t, rollup.Config{Group: group}, nil)
		// One new record proves the member is caught up.
		marker := fmt.Sprintf("marker-%d", i)
		env.Produce(t, 0, "tenant-00", rolluptest.Events(marker, 3)...)
		records++
		want[rolluptest.Bucket{Tenant: "tenant-00", Type: "page_view", Minute: rolluptest.EventTime}] += 3
		for j := range 3 {
			keys[rolluptest.DedupKey{Tenant: "tenant-00", EventID: fmt.Sprintf("%s-%d", marker, j)}] = struct{}{}
		}
		requireMetric(t, r, 3, mEvents, "result", "inserted")
		require.Equal(t, 1.0, r.Metric(mRecords, "result", "ok"), "Kafka commits %s: only the new record was read", tamper.name)
		require.Zero(t, r.Metric(mEvents, "result", "duplicate"), "Kafka commits %s: nothing read twice", tamper.name)
		env.RequireBuckets(t, want, keys)
		r.Stop(t)
	}

	// 3. Another group reads everything again.
	allEvents := rolluptest.CountEvents(work.Batches) + rolluptest.CountEvents(retries) + 6
	other := env.Start(t, rollup.Config{Group: "replay-again"}, nil)
	requireMetric(t, other, float64(records), mRecords, "result", "ok")
	requireMetric(t, other, float64(allEvents), mEvents, "result", "duplicate")
	require.Zero(t, other.Metric(mEvents, "result", "inserted"))
	require.Equal(t, env.StoredOffsets(t, group), env.StoredOffsets(t, "replay-again"), "both groups at the end of the log")
	env.RequireBuckets(t, want, keys)
}

// requireMetric polls until r's metric equals want.
func requireMetric(t *testing.T, r *rolluptest.Running, want float64, name string, labels ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, r.Metric(name, labels...), "%s %v", name, labels)
	}, 2*rolluptest.Wait, rolluptest.Tick)
}
