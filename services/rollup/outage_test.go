package rollup_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
	"github.com/abacus-analytics/abacus/tenancy"
)

const (
	mDBFailing  = "abacus_rollup_db_failing"
	mDBFailures = "abacus_rollup_db_failures_total"
)

// TestConsumer_SurvivesDatabaseOutage stops the package's PostgreSQL while
// records keep arriving: the consumer keeps running and retrying, and after
// the restart the totals are exact. In a second outage another member joins
// the group (the rebalance must not wait for the stuck batch, and the
// newcomer cannot even load its offsets) and the first one shuts down.
//
// It stops the server every test of the package shares, so it must not call
// t.Parallel: Go finishes it before any parallel test resumes.
func TestConsumer_SurvivesDatabaseOutage(t *testing.T) {
	env := rolluptest.NewEnv(t, 2)
	pg := devstacktest.PostgresServer(t)
	down := false
	stop := func() {
		t.Helper()
		down = true
		require.NoError(t, pg.Stop())
	}
	start := func(ctx context.Context) {
		t.Helper()
		require.NoError(t, pg.Restart(ctx))
		down = false
	}
	t.Cleanup(func() {
		// Leave the server running for the tests after this one, even when
		// this one failed half way. (t.Context is canceled by now.)
		if down {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
			defer cancel()
			start(ctx)
		}
	})
	want := map[tenancy.ID]int64{}
	produce := func(prefix string) {
		env.Produce(t, 0, "acme", rolluptest.Events("a-"+prefix, 4)...)
		env.Produce(t, 1, "globex", rolluptest.Events("g-"+prefix, 3)...)
		want["acme"] += 4
		want["globex"] += 3
	}

	r := env.Start(t, rollup.Config{Group: "outage"}, nil)
	produce("before")
	env.RequireCounts(t, want)

	stop()
	produce("during-1")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1.0, r.Metric(mDBFailing))
		assert.GreaterOrEqual(c, r.Metric(mDBFailures), 3.0, "retrying")
	}, rolluptest.Wait, rolluptest.Tick)
	produce("during-2")
	require.False(t, r.Returned(), "the consumer keeps running through the outage")

	start(t.Context())
	env.RequireCounts(t, want)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 0.0, r.Metric(mDBFailing))
	}, rolluptest.Wait, rolluptest.Tick)
	require.False(t, r.Returned())

	// A member joins during the next outage. The retrying consumer gives up
	// its batch so the group can rebalance (rather than holding it until the
	// 60 s rebalance timeout); the newcomer retries loading its offsets.
	stop()
	produce("during-3")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1.0, r.Metric(mDBFailing))
	}, rolluptest.Wait, rolluptest.Tick)
	second := env.Start(t, rollup.Config{Group: "outage"}, nil)
	env.RequireGroupBalanced(t, "outage", 2)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1.0, second.Metric(mDBFailing))
		assert.GreaterOrEqual(c, second.Metric(mDBFailures), 2.0, "loading offsets, retrying")
	}, rolluptest.Wait, rolluptest.Tick)

	// Shutdown in the middle of the outage: Run returns nil promptly (Stop
	// requires it), abandoning the batch; the other member takes over.
	r.Stop(t)
	produce("after-handover")
	start(t.Context())
	env.RequireCounts(t, want)
	require.False(t, second.Returned())
}
