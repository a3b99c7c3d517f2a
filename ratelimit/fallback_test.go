package ratelimit

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

func TestFallbackWhenRedisRefuses(t *testing.T) {
	t.Parallel()
	rdb := refusingClient(t)
	hook := &countingHook{}
	rdb.AddHook(hook)
	clock := newFakeClock()
	l, reg, logs := newTestLimiter(t, rdb, Config{Now: clock.Now, ProbeInterval: time.Second})
	limit := Limit{Rate: 10, Burst: 20}

	res, err := l.AllowN(t.Context(), "acme", "events", limit, 15)
	require.NoError(t, err)
	require.True(t, res.Local)
	require.Equal(t, 15, res.Allowed)
	require.EqualValues(t, 5, res.Remaining)
	require.Equal(t, 1, hook.count(), "the first decision tried Redis")
	require.True(t, l.Degraded())
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_fallback_active"))

	// While degraded and before the probe is due, Redis is left alone.
	res, err = l.AllowN(t.Context(), "acme", "events", limit, 15)
	require.NoError(t, err)
	require.True(t, res.Local)
	require.Equal(t, 5, res.Allowed, "the local bucket keeps its state")
	require.InDelta(t, 0.1, res.RetryAfter.Seconds(), 1e-6, "one unit per 100ms")
	require.InDelta(t, 2.0, res.ResetAfter.Seconds(), 1e-6)
	for range 50 {
		_, err := l.AllowN(t.Context(), "acme", "events", limit, 1)
		require.NoError(t, err)
	}
	require.Equal(t, 1, hook.count())

	// The local bucket refills with the clock.
	clock.Advance(500 * time.Millisecond)
	res, err = l.AllowN(t.Context(), "acme", "events", limit, 10)
	require.NoError(t, err)
	require.Equal(t, 5, res.Allowed)
	require.Equal(t, 1, hook.count())

	// Once the probe is due, exactly one decision goes to Redis.
	clock.Advance(500 * time.Millisecond)
	for range 10 {
		res, err := l.AllowN(t.Context(), "acme", "events", limit, 1)
		require.NoError(t, err)
		require.True(t, res.Local)
	}
	require.Equal(t, 2, hook.count())

	require.Equal(t, 1, logs.count(slog.LevelWarn), "one warning for the whole outage")
	require.Zero(t, logs.count(slog.LevelInfo))
	require.Equal(t, 63.0, metricValue(t, reg, "abacus_ratelimit_fallback_decisions_total", "kind", "events"))
	require.Equal(t, 2.0, metricValue(t, reg, "abacus_ratelimit_redis_errors_total"))
}

func TestFallbackWhenRedisIsSilent(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	// The client's read timeout is 2s; RedisTimeout must win over it.
	l, reg, _ := newTestLimiter(t, silentClient(t), Config{Now: clock.Now, RedisTimeout: 20 * time.Millisecond})
	res, err := l.AllowN(t.Context(), "acme", "requests", Limit{Rate: 1, Burst: 1}, 1)
	require.NoError(t, err)
	require.True(t, res.Local)
	require.Equal(t, 1, res.Allowed)
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_fallback_active"))
}

func TestFallbackLocalShare(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{Now: clock.Now, LocalShare: 0.25})
	tests := []struct {
		name      string
		tenant    string
		limit     Limit
		wantBurst int
		wantRate  float64
	}{
		{name: "quarter", tenant: "quarter", limit: Limit{Rate: 100, Burst: 40}, wantBurst: 10, wantRate: 25},
		{name: "at least one", tenant: "tiny", limit: Limit{Rate: 2, Burst: 2}, wantBurst: 1, wantRate: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.AllowN(t.Context(), tenantID(tt.tenant), "events", tt.limit, 1000)
			require.NoError(t, err)
			require.True(t, res.Local)
			require.Equal(t, tt.wantBurst, res.Allowed)
			require.Equal(t, tt.limit, res.Limit, "the result names the configured limit")
			require.InDelta(t, 1/tt.wantRate, res.RetryAfter.Seconds(), 1e-6)
		})
	}
}

// TestFallbackLimitChange checks that a local bucket follows a changed
// limit instead of keeping the one it was created with.
func TestFallbackLimitChange(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{Now: clock.Now})
	res, err := l.AllowN(t.Context(), "acme", "events", Limit{Rate: 1, Burst: 5}, 5)
	require.NoError(t, err)
	require.Equal(t, 5, res.Allowed)
	clock.Advance(time.Second)
	res, err = l.AllowN(t.Context(), "acme", "events", Limit{Rate: 100, Burst: 50}, 100)
	require.NoError(t, err)
	require.Equal(t, 1, res.Allowed, "one unit refilled at the old rate")
	clock.Advance(100 * time.Millisecond)
	res, err = l.AllowN(t.Context(), "acme", "events", Limit{Rate: 100, Burst: 50}, 100)
	require.NoError(t, err)
	require.Equal(t, 10, res.Allowed, "then ten at the new one")
}

// TestFallbackRedisStopped stops the package's Redis server, so it must not
// run in parallel with tests that use it.
func TestFallbackRedisStopped(t *testing.T) {
	rdb := redisClient(t)
	srv := devstacktest.RedisServer(t)
	clock := newFakeClock()
	l, reg, logs := newTestLimiter(t, rdb, Config{Now: clock.Now, RedisTimeout: time.Second, ProbeInterval: time.Second})
	limit := Limit{Rate: 0.01, Burst: 100}

	res, err := l.AllowN(t.Context(), "acme", "events", limit, 10)
	require.NoError(t, err)
	require.False(t, res.Local)
	require.Equal(t, 10, res.Allowed)

	require.NoError(t, srv.Stop())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = srv.Restart(t.Context())
		}
	})

	for range 20 {
		res, err := l.AllowN(t.Context(), "acme", "events", limit, 1)
		require.NoError(t, err)
		require.True(t, res.Local)
		require.Equal(t, 1, res.Allowed)
	}
	require.True(t, l.Degraded())
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_fallback_active"))
	require.Equal(t, 20.0, metricValue(t, reg, "abacus_ratelimit_fallback_decisions_total", "kind", "events"))

	require.NoError(t, srv.Restart(t.Context()))
	restarted = true

	// Pooled connections died with the server; a probe may need a second
	// try. Each probe needs the clock to move on by the probe interval.
	deadline := time.Now().Add(10 * time.Second)
	for {
		clock.Advance(time.Second)
		res, err := l.AllowN(t.Context(), "acme", "events", limit, 1)
		require.NoError(t, err)
		if !res.Local {
			break
		}
		require.True(t, time.Now().Before(deadline), "Redis decisions did not resume")
	}
	require.False(t, l.Degraded())
	require.Zero(t, metricValue(t, reg, "abacus_ratelimit_fallback_active"))
	require.Equal(t, 1, logs.count(slog.LevelWarn))
	require.Equal(t, 1, logs.count(slog.LevelInfo))

	res, err = l.AllowN(t.Context(), "acme", "events", limit, 1)
	require.NoError(t, err)
	require.False(t, res.Local)
}

// TestFallbackStartsFromTheNodesUse: what Redis granted is taken from the
// node's local bucket too, so falling back (even briefly, as under load)
// does not hand out a second burst.
func TestFallbackStartsFromTheNodesUse(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	limit := Limit{Rate: 1, Burst: 100}
	res, err := l.AllowN(t.Context(), "acme", "events", limit, 100)
	require.NoError(t, err)
	require.False(t, res.Local)
	require.Equal(t, 100, res.Allowed)

	local := l.local.allow(l.cfg.KeyPrefix+"acme:events", limit, 100, time.Now())
	require.LessOrEqual(t, local.Allowed, 2, "the local bucket knows the burst is spent")
}

// TestBreakerIgnoresAnswersFromBeforeTheOutage: calls that were in flight
// when Redis timed out may still succeed; they must not end the fallback,
// or the limiter would flap in and out of it (and log each time).
func TestBreakerIgnoresAnswersFromBeforeTheOutage(t *testing.T) {
	t.Parallel()
	var enters, leaves int
	b := &breaker{interval: time.Second, onEnter: func(error) { enters++ }, onLeave: func(time.Duration) { leaves++ }}
	t0 := time.Unix(1000, 0)
	require.True(t, b.attempt(t0))
	b.failed(t0.Add(50*time.Millisecond), errors.New("timeout"))
	require.True(t, b.isDegraded())

	b.answered(t0.Add(time.Millisecond), t0.Add(60*time.Millisecond)) // started before the outage
	require.True(t, b.isDegraded(), "an old call's answer does not end the outage")

	probe := t0.Add(2 * time.Second)
	require.True(t, b.attempt(probe))
	b.answered(probe, probe.Add(time.Millisecond))
	require.False(t, b.isDegraded())
	require.Equal(t, 1, enters)
	require.Equal(t, 1, leaves)
}
