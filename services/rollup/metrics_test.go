package rollup_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
)

// TestConsumer_ExportsLagAndRate: the lag is exported per owned partition
// and keeps growing while the consumer is stalled (it is refreshed from the
// broker, not only after batches); the processing rate shows committed
// events per second and falls back to zero when idle; a member that loses
// partitions in a rebalance stops reporting them.
func TestConsumer_ExportsLagAndRate(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 3)
	const group = "metrics"
	for p := range 3 {
		for i := range 4 + p {
			env.Produce(t, int32(p), "acme", rolluptest.Events(fmt.Sprintf("p%d-%d", p, i), 10)...)
		}
	}
	cfg := rollup.Config{Group: group, LagInterval: 100 * time.Millisecond, MaxPollRecords: 1, SessionTimeout: 3 * time.Second}
	gate := newGate()
	gate.arm()
	r := env.Start(t, cfg, &gatedStore{Store: env.DB, gate: gate})
	gate.waitHeld(t)

	lagOf := func(p int) float64 { return r.Metric(mLag, "partition", strconv.Itoa(p)) }
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 4.0, lagOf(0), "stalled on its first batch: the whole backlog")
		assert.Equal(c, 5.0, lagOf(1))
		assert.Equal(c, 6.0, lagOf(2))
		assert.Equal(c, 0.0, r.Metric(mRate))
	}, rolluptest.Wait, rolluptest.Tick)
	env.Produce(t, 0, "acme", rolluptest.Events("late", 10)...)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 5.0, lagOf(0), "records arriving while stalled")
	}, rolluptest.Wait, rolluptest.Tick)

	// Released, it catches up; the rate shows the burst, then idles at 0.
	var sawRate atomic.Bool
	gate.open()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		if r.Metric(mRate) > 0 {
			sawRate.Store(true)
		}
		assert.True(c, sawRate.Load(), "a positive processing rate while catching up")
		assert.Equal(c, 160.0, r.Metric(mEvents, "result", "inserted"))
		assert.Equal(c, 0.0, r.Metric(mLag))
	}, rolluptest.Wait, 5*time.Millisecond)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 0.0, r.Metric(mRate), "idle")
	}, rolluptest.Wait, rolluptest.Tick)
	require.Equal(t, 3, seriesOf(r, mLag), "one lag series per owned partition")

	// A second member takes partitions over; the first reports only what
	// it still owns.
	second := env.Start(t, cfg, nil)
	env.RequireGroupBalanced(t, group, 2)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 3, seriesOf(r, mLag)+seriesOf(second, mLag), "every partition reported once")
		assert.Less(c, seriesOf(r, mLag), 3)
	}, rolluptest.Wait, rolluptest.Tick)
	require.Positive(t, r.Metric(mClaims))
}

// seriesOf counts the series of the named metric (-1 if the registry
// cannot be gathered).
func seriesOf(r *rolluptest.Running, name string) int {
	families, err := r.Registry.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}
