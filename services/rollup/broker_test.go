package rollup_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
)

// TestConsumer_SurvivesBrokerRestart restarts the broker on its data
// directory twice while events of 20 tenants stream in and two members
// consume them: once at once, and once after it was down longer than the
// session timeout. The members ride out both. After the quick restart the
// coordinator reloads the group, members included, as a Kafka coordinator
// does, so the generation goes on; after the long one their sessions have
// expired, so they rejoin in a newer generation and claim their
// partitions anew. Production resumes, and the totals are exact.
func TestConsumer_SurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	events := 10_000
	if *long {
		events = 100_000
	}
	env := rolluptest.NewEnvWith(t, rolluptest.Options{Partitions: 4, KafkaDir: t.TempDir()})
	const group = "broker-restart"
	cfg := rollup.Config{Group: group, SessionTimeout: 3 * time.Second, RebalanceTimeout: 5 * time.Second, MaxPollRecords: 20}
	work := rolluptest.NewWorkload(9, 20, events, 50, 10)
	claims := &claimLog{}
	a := env.Start(t, cfg, &gatedStore{Store: env.DB, claims: claims})
	b := env.Start(t, cfg, &gatedStore{Store: env.DB, claims: claims})
	env.RequireGroupBalanced(t, group, 2)

	produced := make(chan error, 1)
	pause := 8 * time.Second * 4 / time.Duration(len(work.Batches))
	go func() {
		produced <- rolluptest.ProduceAll(t.Context(), env.RecordProducer(t), work.Batches, 4, func() { time.Sleep(pause) })
	}()
	counted := func() int64 {
		var n int64
		require.NoError(t, env.DB.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+env.DedupTable()).Scan(&n))
		return n
	}
	reach := func(n int64) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.GreaterOrEqual(c, counted(), n, "the members apply new events")
		}, rolluptest.Wait, rolluptest.Tick)
	}

	// Quick restart, a third of the way.
	reach(int64(work.Distinct() / 3))
	generation := maxGeneration(claims)
	require.NoError(t, env.Kafka.Restart(t.Context()))
	t.Logf("broker restarted: %d events counted, generation %d", counted(), generation)

	// Down for longer than the session timeout, two thirds of the way.
	reach(int64(work.Distinct() * 2 / 3))
	env.Kafka.Stop()
	time.Sleep(cfg.SessionTimeout + time.Second)
	require.NoError(t, env.Kafka.Restart(t.Context()))
	t.Logf("broker restarted after %s down: %d events counted", cfg.SessionTimeout+time.Second, counted())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Greater(c, maxGeneration(claims), generation, "the members rejoined and claimed their partitions again")
	}, rolluptest.Wait, rolluptest.Tick)
	select {
	case err := <-produced:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		require.FailNow(t, "production did not finish")
	}
	env.RequireBucketsWithin(t, work.Want(), work.Keys(), 2*rolluptest.Wait)
	env.RequireGroupBalanced(t, group, 2)
	require.False(t, a.Returned())
	require.False(t, b.Returned())
	inserted := a.Metric(mEvents, "result", "inserted") + b.Metric(mEvents, "result", "inserted")
	require.Equal(t, float64(work.Distinct()), inserted, "every event inserted once")
	t.Logf("%d events exact after two broker restarts; %.0f duplicates (records a producer wrote again when a restart lost its acknowledgement)",
		work.Distinct(), a.Metric(mEvents, "result", "duplicate")+b.Metric(mEvents, "result", "duplicate"))
}

func maxGeneration(claims *claimLog) int32 {
	g := int32(-1)
	for _, c := range claims.all() {
		g = max(g, c.generation)
	}
	return g
}
