package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestQuotaConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, QuotaConfig{}.Validate())
	err := QuotaConfig{KeyPrefix: string(make([]byte, 129)), RedisTimeout: -time.Second}.Validate()
	require.ErrorContains(t, err, "quota key prefix is 129 bytes")
	require.ErrorContains(t, err, "quota redis timeout must not be negative")
	c := QuotaConfig{}.withDefaults()
	require.Equal(t, "abacus:quota:", c.KeyPrefix)
	require.Equal(t, 50*time.Millisecond, c.RedisTimeout)
	_, err = NewQuota(nil, QuotaConfig{}, nil, nil)
	require.ErrorContains(t, err, "nil redis client")
}

// thisMonth is a time in the current month, so that counters written by a
// test do not expire at once (they live 35 days past their month).
func thisMonth() time.Time {
	start, _ := tenancy.MonthPeriod(time.Now())
	return start.Add(36 * time.Hour)
}

func TestQuotaReserve(t *testing.T) {
	t.Parallel()
	q, _, _ := newTestQuota(t, redisClient(t), QuotaConfig{})
	now := thisMonth()
	start, end := tenancy.MonthPeriod(now)

	tests := []struct {
		name        string
		n           int
		hard        int64
		wantGranted int
		wantUsed    int64
	}{
		{name: "fits", n: 60, hard: 100, wantGranted: 60, wantUsed: 60},
		{name: "partial at the hard limit", n: 60, hard: 100, wantGranted: 40, wantUsed: 100},
		{name: "exhausted", n: 1, hard: 100, wantGranted: 0, wantUsed: 100},
		{name: "zero events", n: 0, hard: 100, wantGranted: 0, wantUsed: 100},
		{name: "raised quota", n: 30, hard: 120, wantGranted: 20, wantUsed: 120},
		{name: "unlimited", n: 1_000_000, hard: 0, wantGranted: 1_000_000, wantUsed: 1_000_120},
	}
	for _, tt := range tests { // in order: each step sees the previous ones
		res, err := q.Reserve(t.Context(), "acme", now, tt.n, tt.hard)
		require.NoError(t, err, tt.name)
		require.Equal(t, QuotaResult{
			Granted:     tt.wantGranted,
			Used:        tt.wantUsed,
			PeriodStart: start,
			PeriodEnd:   end,
		}, res, tt.name)
	}
	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 1_000_120, used)

	used, err = q.MonthlyEvents(t.Context(), "globex", now)
	require.NoError(t, err)
	require.Zero(t, used, "another tenant has its own counter")
}

func TestQuotaKeyLayoutAndExpiry(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	q, _, _ := newTestQuota(t, rdb, QuotaConfig{})
	now := thisMonth()
	start, end := tenancy.MonthPeriod(now)
	_, err := q.Reserve(t.Context(), "acme", now, 7, 0)
	require.NoError(t, err)

	key := "abacus:quota:acme:" + start.Format("2006-01")
	v, err := rdb.Get(t.Context(), key).Int64()
	require.NoError(t, err)
	require.EqualValues(t, 7, v)
	exp, err := rdb.ExpireTime(t.Context(), key).Result()
	require.NoError(t, err)
	require.Equal(t, end.Add(35*24*time.Hour).Unix(), int64(exp/time.Second))
}

func TestQuotaMonthRollover(t *testing.T) {
	t.Parallel()
	q, _, _ := newTestQuota(t, redisClient(t), QuotaConfig{})
	_, end := tenancy.MonthPeriod(time.Now())
	lastSecond, nextMonth := end.Add(-time.Second), end

	res, err := q.Reserve(t.Context(), "acme", lastSecond, 10, 10)
	require.NoError(t, err)
	require.Equal(t, 10, res.Granted)
	require.Equal(t, end, res.PeriodEnd)

	res, err = q.Reserve(t.Context(), "acme", lastSecond, 1, 10)
	require.NoError(t, err)
	require.Zero(t, res.Granted, "the month's quota is used up")

	res, err = q.Reserve(t.Context(), "acme", nextMonth, 5, 10)
	require.NoError(t, err)
	require.Equal(t, 5, res.Granted, "a new month starts from zero")
	require.EqualValues(t, 5, res.Used)
	require.Equal(t, end, res.PeriodStart)
	require.Equal(t, end.AddDate(0, 1, 0), res.PeriodEnd)

	used, err := q.MonthlyEvents(t.Context(), "acme", lastSecond)
	require.NoError(t, err)
	require.EqualValues(t, 10, used)
	used, err = q.MonthlyEvents(t.Context(), "acme", nextMonth)
	require.NoError(t, err)
	require.EqualValues(t, 5, used)
}

func TestQuotaRefund(t *testing.T) {
	t.Parallel()
	q, _, _ := newTestQuota(t, redisClient(t), QuotaConfig{})
	now := thisMonth()
	res, err := q.Reserve(t.Context(), "acme", now, 50, 60)
	require.NoError(t, err)
	require.Equal(t, 50, res.Granted)

	require.NoError(t, q.Refund(t.Context(), "acme", res.PeriodStart, 20))
	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 30, used)

	res, err = q.Reserve(t.Context(), "acme", now, 50, 60)
	require.NoError(t, err)
	require.Equal(t, 30, res.Granted, "refunded events are available again")

	// A canceled context does not stop a refund.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, q.Refund(ctx, "acme", res.PeriodStart, 10))
	used, err = q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 50, used)

	// The counter never goes below zero.
	require.NoError(t, q.Refund(t.Context(), "acme", res.PeriodStart, 1000))
	used, err = q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.Zero(t, used)
	require.NoError(t, q.Refund(t.Context(), "acme", res.PeriodStart, 0))
}

func TestQuotaInvalidArguments(t *testing.T) {
	t.Parallel()
	q, _, _ := newTestQuota(t, refusingClient(t), QuotaConfig{})
	now := thisMonth()
	start, _ := tenancy.MonthPeriod(now)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{name: "reserve bad tenant", call: func() error { _, err := q.Reserve(t.Context(), "a:b", now, 1, 0); return err }, want: "invalid tenant ID"},
		{name: "reserve negative n", call: func() error { _, err := q.Reserve(t.Context(), "acme", now, -1, 0); return err }, want: "n = -1"},
		{name: "reserve negative hard", call: func() error { _, err := q.Reserve(t.Context(), "acme", now, 1, -1); return err }, want: "hard quota -1"},
		{name: "refund bad tenant", call: func() error { return q.Refund(t.Context(), "", start, 1) }, want: "invalid tenant ID"},
		{name: "refund negative n", call: func() error { return q.Refund(t.Context(), "acme", start, -1) }, want: "n = -1"},
		{name: "refund not a period start", call: func() error { return q.Refund(t.Context(), "acme", now, 1) }, want: "not the start of a month"},
		{name: "monthly events bad tenant", call: func() error { _, err := q.MonthlyEvents(t.Context(), "Acme", now); return err }, want: "invalid tenant ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.ErrorContains(t, err, tt.want)
		})
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := q.Reserve(ctx, "acme", now, 1, 0)
	require.ErrorIs(t, err, context.Canceled)
}

func TestQuotaFailOpenWhenRedisRefuses(t *testing.T) {
	t.Parallel()
	q, reg, logs := newTestQuota(t, refusingClient(t), QuotaConfig{})
	now := thisMonth()
	start, end := tenancy.MonthPeriod(now)

	res, err := q.Reserve(t.Context(), "acme", now, 70, 50)
	require.NoError(t, err)
	require.Equal(t, QuotaResult{Granted: 70, Used: 70, PeriodStart: start, PeriodEnd: end, Local: true}, res,
		"everything is granted, even beyond the hard quota")
	res, err = q.Reserve(t.Context(), "acme", now, 5, 50)
	require.NoError(t, err)
	require.Equal(t, 5, res.Granted)
	require.EqualValues(t, 75, res.Used)
	require.True(t, q.FailingOpen())

	// A refund of events counted only in memory is settled in memory.
	require.NoError(t, q.Refund(t.Context(), "acme", start, 25))
	require.EqualValues(t, 50, q.pendingEvents())

	require.Equal(t, 2.0, metricValue(t, reg, "abacus_quota_fail_open_total"))
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_quota_fail_open_active"))
	require.Equal(t, 50.0, metricValue(t, reg, "abacus_quota_pending_events"))
	require.Equal(t, 1, logs.count(slog.LevelWarn))

	_, err = q.MonthlyEvents(t.Context(), "acme", now)
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, q.Flush(t.Context()), ErrUnavailable)
	require.EqualValues(t, 50, q.pendingEvents(), "nothing is lost by a failed flush")
}

func TestQuotaFailOpenWhenRedisIsSilent(t *testing.T) {
	t.Parallel()
	q, _, _ := newTestQuota(t, silentClient(t), QuotaConfig{RedisTimeout: 20 * time.Millisecond})
	res, err := q.Reserve(t.Context(), "acme", thisMonth(), 3, 1)
	require.NoError(t, err)
	require.True(t, res.Local)
	require.Equal(t, 3, res.Granted)
}

// TestQuotaFailOpenRedisStopped stops the package's Redis server, so it
// must not run in parallel with tests that use it.
func TestQuotaFailOpenRedisStopped(t *testing.T) {
	rdb := redisClient(t)
	srv := devstacktest.RedisServer(t)
	q, reg, logs := newTestQuota(t, rdb, QuotaConfig{RedisTimeout: time.Second})
	now := thisMonth()
	start, _ := tenancy.MonthPeriod(now)

	res, err := q.Reserve(t.Context(), "acme", now, 10, 1000)
	require.NoError(t, err)
	require.False(t, res.Local)

	require.NoError(t, srv.Stop())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = srv.Restart(t.Context())
		}
	})

	for range 4 {
		res, err := q.Reserve(t.Context(), "acme", now, 25, 1000)
		require.NoError(t, err)
		require.True(t, res.Local)
		require.Equal(t, 25, res.Granted)
	}
	res, err = q.Reserve(t.Context(), "globex", now, 7, 0)
	require.NoError(t, err)
	require.True(t, res.Local)
	// A refund that reaches neither memory (nothing pending for the month
	// before) nor Redis waits for the flush too.
	require.NoError(t, q.Refund(t.Context(), "acme", start.AddDate(0, -1, 0), 3))
	require.EqualValues(t, 100+7-3, q.pendingEvents())
	require.Equal(t, 5.0, metricValue(t, reg, "abacus_quota_fail_open_total"))

	require.NoError(t, srv.Restart(t.Context()))
	restarted = true

	// Run flushes every second; the restarted server lost its data (the
	// test server keeps none), so the counters hold exactly what was
	// counted in memory.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	require.Eventually(t, func() bool { return q.pendingEvents() == 0 && !q.FailingOpen() }, 15*time.Second, 50*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 100, used)
	used, err = q.MonthlyEvents(t.Context(), "globex", now)
	require.NoError(t, err)
	require.EqualValues(t, 7, used)
	used, err = q.MonthlyEvents(t.Context(), "acme", start.AddDate(0, -1, 0))
	require.NoError(t, err)
	require.Zero(t, used, "a refund never makes a counter negative")

	require.Zero(t, metricValue(t, reg, "abacus_quota_fail_open_active"))
	require.Zero(t, metricValue(t, reg, "abacus_quota_pending_events"))
	require.Equal(t, 1, logs.count(slog.LevelWarn))
	require.Equal(t, 1, logs.count(slog.LevelInfo))

	res, err = q.Reserve(t.Context(), "acme", now, 1, 1000)
	require.NoError(t, err)
	require.False(t, res.Local)
	require.EqualValues(t, 101, res.Used)
}

// TestQuotaRunFlushesAtShutdown checks the final flush when Run's context
// ends: counts kept in memory reach Redis although no tick came.
func TestQuotaRunFlushesAtShutdown(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	q, _, _ := newTestQuota(t, rdb, QuotaConfig{})
	now := thisMonth()
	start, end := tenancy.MonthPeriod(now)
	// Counted in memory as during an outage.
	q.mu.Lock()
	q.entry(q.key("acme", start), start, end).pending = 42
	q.mu.Unlock()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, q.Run(ctx))
	require.Zero(t, q.pendingEvents())
	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 42, used)
}

// TestQuotaFlushForgetsPastMonths checks that entries of months gone by are
// dropped once nothing is pending for them, so memory stays bounded.
func TestQuotaFlushForgetsPastMonths(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: thisMonth()}
	q, _, _ := newTestQuota(t, redisClient(t), QuotaConfig{Now: clock.Now})
	_, err := q.Reserve(t.Context(), "acme", clock.Now(), 1, 0)
	require.NoError(t, err)
	require.NoError(t, q.Flush(t.Context()))
	require.Len(t, q.entries, 1, "the current month is kept")
	clock.Advance(40 * 24 * time.Hour)
	require.NoError(t, q.Flush(t.Context()))
	require.Empty(t, q.entries)
}

func TestQuotaConcurrentNeverExceedsHard(t *testing.T) {
	t.Parallel()
	// Two Quotas stand for two nodes sharing one Redis.
	rdb := redisClient(t)
	a, _, _ := newTestQuota(t, rdb, QuotaConfig{})
	b, _, _ := newTestQuota(t, rdb, QuotaConfig{})
	now := thisMonth()
	var mu sync.Mutex
	granted := 0
	var wg sync.WaitGroup
	for i := range 16 {
		q := a
		if i%2 == 1 {
			q = b
		}
		wg.Go(func() {
			for range 10 {
				res, err := q.Reserve(t.Context(), "acme", now, 9, 1000)
				require.NoError(t, err)
				require.False(t, res.Local)
				require.LessOrEqual(t, res.Used, int64(1000))
				mu.Lock()
				granted += res.Granted
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1000, granted, "1440 asked, exactly the quota granted")
}
