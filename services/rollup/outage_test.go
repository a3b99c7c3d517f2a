package rollup_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

const (
	mDBFailing  = "abacus_rollup_db_failing"
	mDBFailures = "abacus_rollup_db_failures_total"
	mRate       = "abacus_rollup_events_per_second"
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

// TestConsumer_DatabaseOutageUnderLoad stops PostgreSQL for 10 s (60 s in
// the long variant) while events of 20 tenants keep arriving. The consumer
// must not crash or spin: it retries the one batch it holds with a backoff
// (every attempt is the same batch, so it fetches and applies nothing
// else), reports the outage and a lag that grows with the records arriving,
// and after the restart it catches up to exact totals.
//
// It stops the server every test of the package shares, so it must not call
// t.Parallel.
func TestConsumer_DatabaseOutageUnderLoad(t *testing.T) {
	outage := 10 * time.Second
	if *long {
		outage = time.Minute
	}
	env := rolluptest.NewEnv(t, 4)
	pg := devstacktest.PostgresServer(t)
	down := false
	t.Cleanup(func() {
		if down { // leave the server running for the tests after this one
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
			defer cancel()
			require.NoError(t, pg.Restart(ctx))
		}
	})
	work := rolluptest.NewWorkload(5, 20, 10_000, 50, 10)
	before, during := work.Batches[:len(work.Batches)/2], work.Batches[len(work.Batches)/2:]
	producer := env.RecordProducer(t)

	attempts := &attemptLog{Store: env.DB}
	cfg := rollup.Config{Group: "db-outage", MaxPollRecords: 20, RetryBackoff: 20 * time.Millisecond, LagInterval: 100 * time.Millisecond}
	r := env.Start(t, cfg, attempts)
	require.NoError(t, rolluptest.ProduceAll(t.Context(), producer, before, 4, nil))
	wantBefore, keysBefore := rolluptest.WantOf(before)
	env.RequireBuckets(t, wantBefore, keysBefore)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 0.0, r.Metric(mLag), "caught up")
	}, rolluptest.Wait, rolluptest.Tick)
	recordsBefore := r.Metric(mRecords, "result", "ok")

	require.NoError(t, pg.Stop())
	down = true
	stopped := time.Now()
	require.NoError(t, rolluptest.ProduceAll(t.Context(), producer, during, 4, nil))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1.0, r.Metric(mDBFailing))
		assert.Equal(c, float64(len(during)), r.Metric(mLag), "the lag counts every record that arrived since")
		assert.Equal(c, 0.0, r.Metric(mRate), "nothing commits")
	}, outage, rolluptest.Tick)
	if rest := outage - time.Since(stopped); rest > 0 {
		time.Sleep(rest)
	}
	require.False(t, r.Returned(), "the consumer keeps running through the outage")
	failed := attempts.failures()
	require.NoError(t, pg.Restart(t.Context()))
	down = false
	restarted := time.Since(stopped)

	env.RequireBucketsWithin(t, work.Want(), work.Keys(), 2*rolluptest.Wait)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 0.0, r.Metric(mDBFailing))
		assert.Equal(c, 0.0, r.Metric(mLag))
	}, rolluptest.Wait, rolluptest.Tick)
	require.False(t, r.Returned())
	require.Equal(t, recordsBefore+float64(len(during)), r.Metric(mRecords, "result", "ok"), "every record applied once")
	require.Zero(t, r.Metric(mEvents, "result", "duplicate"))

	// No crash loop, and fetching paused: the failed attempts are retries of
	// the batches of one poll, at most one per apply lane, no more of them
	// than the backoff allows.
	require.NotEmpty(t, failed, "the outage was noticed")
	batches := map[string]int{}
	for _, f := range failed {
		batches[fmt.Sprint(f.offsets)]++
	}
	require.LessOrEqual(t, len(batches), rollup.DefaultApplyLanes,
		"every attempt during the outage retries a batch of the same poll: %v", batches)
	bound := retriesWithin(cfg.RetryBackoff, restarted) + 1
	for offsets, n := range batches {
		require.LessOrEqual(t, n, bound, "attempts at %s bounded by the backoff over %s", offsets, restarted)
	}
	t.Logf("outage %s: %d failed attempts of %d batches (backoff bound %d each), %d records arrived meanwhile",
		restarted.Round(time.Millisecond), len(failed), len(batches), bound, len(during))
}

// retriesWithin is how many attempts a backoff starting at first, doubling
// up to rollup.MaxRetryBackoff, makes within d (the first is immediate).
func retriesWithin(first, d time.Duration) int {
	n, elapsed, next := 1, time.Duration(0), first
	for elapsed+next <= d {
		elapsed += next
		n++
		next = min(next*2, max(rollup.MaxRetryBackoff, first))
	}
	return n
}

// attemptLog passes ApplyBatch through and records the failed attempts at
// batches with events.
type attemptLog struct {
	rollup.Store
	mu     sync.Mutex
	failed []attempt
}

type attempt struct {
	offsets []postgres.PartitionOffset
}

func (l *attemptLog) ApplyBatch(ctx context.Context, b postgres.Batch) (postgres.Applied, error) {
	applied, err := l.Store.ApplyBatch(ctx, b)
	if err != nil && len(b.Events) > 0 && ctx.Err() == nil {
		offsets := slices.Clone(b.Offsets)
		slices.SortFunc(offsets, func(a, b postgres.PartitionOffset) int { return cmp.Compare(a.Partition, b.Partition) })
		l.mu.Lock()
		l.failed = append(l.failed, attempt{offsets: offsets})
		l.mu.Unlock()
	}
	return applied, err
}

func (l *attemptLog) failures() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failed)
}
