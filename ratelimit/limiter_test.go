package ratelimit

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "zero value selects defaults", cfg: Config{}},
		{name: "explicit values", cfg: Config{KeyPrefix: "x:", RedisTimeout: time.Second, ProbeInterval: time.Minute, LocalShare: 0.25, LocalTenants: 5}},
		{
			name: "every problem listed",
			cfg:  Config{KeyPrefix: string(make([]byte, 200)), RedisTimeout: -1, ProbeInterval: -1, LocalShare: 1.5, LocalTenants: -3},
			wantErr: []string{"key prefix is 200 bytes", "redis timeout must not be negative", "probe interval must not be negative",
				"local share must be in (0, 1]", "local tenants must be"},
		},
		{name: "NaN share", cfg: Config{LocalShare: math.NaN()}, wantErr: []string{"local share"}},
		{name: "negative share", cfg: Config{LocalShare: -0.5}, wantErr: []string{"local share"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	require.Equal(t, "abacus:rl:", c.KeyPrefix)
	require.Equal(t, 50*time.Millisecond, c.RedisTimeout)
	require.Equal(t, time.Second, c.ProbeInterval)
	require.Equal(t, 1.0, c.LocalShare)
	require.Equal(t, 10000, c.LocalTenants)
	require.NotNil(t, c.Now)
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	_, err := New(nil, Config{}, nil, nil)
	require.ErrorContains(t, err, "nil redis client")
	_, err = New(refusingClient(t), Config{LocalShare: 2}, nil, nil)
	require.ErrorContains(t, err, "local share")
}

func TestRedisLimitPrecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate       float64
		wantRate   int
		wantPeriod time.Duration
	}{
		{rate: 1000, wantRate: 1000, wantPeriod: time.Second},
		{rate: 0.5, wantRate: 5, wantPeriod: 10 * time.Second},
		{rate: 1234.5, wantRate: 12345, wantPeriod: 10 * time.Second},
		{rate: 1.0 / 3, wantRate: 3333, wantPeriod: 10000 * time.Second},
		{rate: MinRate, wantRate: 1, wantPeriod: 100000 * time.Second},
		{rate: MaxRate, wantRate: 1e7, wantPeriod: time.Second},
		{rate: 12345.678, wantRate: 12346, wantPeriod: time.Second},
		{rate: 0.001, wantRate: 1, wantPeriod: 1000 * time.Second},
	}
	for _, tt := range tests {
		got := redisLimit(Limit{Rate: tt.rate, Burst: 7})
		require.Equal(t, tt.wantRate, got.Rate, "rate %v", tt.rate)
		require.Equal(t, tt.wantPeriod, got.Period, "rate %v", tt.rate)
		require.Equal(t, 7, got.Burst)
		requirePrecise(t, tt.rate, got.Rate, got.Period)
	}
}

// requirePrecise checks that rate units per period is within 0.1 % of want.
func requirePrecise(t testing.TB, want float64, rate int, period time.Duration) {
	t.Helper()
	got := float64(rate) / period.Seconds()
	require.InEpsilon(t, want, got, 1e-3, "%v/s expressed as %d per %v", want, rate, period)
}

func FuzzRedisLimit(f *testing.F) {
	for _, r := range []float64{MinRate, 0.5, 1, 1.0 / 3, 1234.5, 99999.99, MaxRate} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, r float64) {
		l := Limit{Rate: r, Burst: 1}
		if l.validate() != nil {
			return
		}
		got := redisLimit(l)
		require.GreaterOrEqual(t, got.Rate, 1)
		require.Greater(t, got.Period, time.Duration(0))
		requirePrecise(t, r, got.Rate, got.Period)
	})
}

func TestAllowNInvalidArguments(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{})
	good := Limit{Rate: 10, Burst: 10}
	tests := []struct {
		name   string
		tenant tenancy.ID
		kind   string
		limit  Limit
		n      int
		want   string
	}{
		{name: "empty tenant", tenant: "", kind: "events", limit: good, n: 1, want: "invalid tenant ID"},
		{name: "tenant with separator", tenant: "acme:x", kind: "events", limit: good, n: 1, want: "invalid tenant ID"},
		{name: "empty kind", tenant: "acme", kind: "", limit: good, n: 1, want: "kind"},
		{name: "kind with separator", tenant: "acme", kind: "ev:x", limit: good, n: 1, want: "kind"},
		{name: "kind too long", tenant: "acme", kind: "abcdefghijklmnopqrstuvwxyz0123456", limit: good, n: 1, want: "kind"},
		{name: "zero rate", tenant: "acme", kind: "events", limit: Limit{Rate: 0, Burst: 1}, n: 1, want: "rate 0"},
		{name: "negative rate", tenant: "acme", kind: "events", limit: Limit{Rate: -1, Burst: 1}, n: 1, want: "rate -1"},
		{name: "NaN rate", tenant: "acme", kind: "events", limit: Limit{Rate: math.NaN(), Burst: 1}, n: 1, want: "rate NaN"},
		{name: "infinite rate", tenant: "acme", kind: "events", limit: Limit{Rate: math.Inf(1), Burst: 1}, n: 1, want: "rate +Inf"},
		{name: "zero burst", tenant: "acme", kind: "events", limit: Limit{Rate: 1, Burst: 0}, n: 1, want: "burst 0"},
		{name: "negative burst", tenant: "acme", kind: "events", limit: Limit{Rate: 1, Burst: -5}, n: 1, want: "burst -5"},
		{name: "negative n", tenant: "acme", kind: "events", limit: good, n: -1, want: "n = -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := l.AllowN(t.Context(), tt.tenant, tt.kind, tt.limit, tt.n)
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestAllowNCanceledContext(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := l.AllowN(ctx, "acme", "events", Limit{Rate: 1, Burst: 1}, 1)
	require.ErrorIs(t, err, context.Canceled)
}

// TestAllowNAccuracy drives five times the limit for a few seconds through
// Redis and checks that what is accepted matches burst + rate × elapsed.
func TestAllowNAccuracy(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	l, _, _ := newTestLimiter(t, rdb, Config{})
	limit := Limit{Rate: 1000, Burst: 2000}
	const batch = 50 // 100 batches per second: 5000 events/s

	// Connect and load the script first, so that the clock starts with the
	// bucket's first decision.
	_, err := l.AllowN(t.Context(), "warmup", "events", limit, 1)
	require.NoError(t, err)

	var accepted, asked int
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		res, err := l.AllowN(t.Context(), "acme", "events", limit, batch)
		require.NoError(t, err)
		require.False(t, res.Local)
		require.LessOrEqual(t, res.Allowed, batch)
		if res.Allowed < batch {
			require.Positive(t, res.RetryAfter)
		} else {
			require.Zero(t, res.RetryAfter)
		}
		accepted += res.Allowed
		asked += batch
		<-tick.C
	}
	elapsed := time.Since(start).Seconds()
	want := float64(limit.Burst) + limit.Rate*elapsed
	t.Logf("accepted %d of %d in %.2fs; burst + rate × elapsed = %.0f", accepted, asked, elapsed, want)
	require.InEpsilon(t, want, float64(accepted), 0.10, "accepted %d in %.2fs, want about %.0f", accepted, elapsed, want)
}

func TestAllowNPartial(t *testing.T) {
	t.Parallel()
	l, reg, _ := newTestLimiter(t, redisClient(t), Config{})
	// One unit per 100s: nothing refills while the test runs.
	limit := Limit{Rate: 0.01, Burst: 10}

	res, err := l.AllowN(t.Context(), "acme", "events", limit, 4)
	require.NoError(t, err)
	require.Equal(t, 4, res.Allowed)
	require.EqualValues(t, 6, res.Remaining)
	require.Zero(t, res.RetryAfter)
	require.InDelta(t, (400 * time.Second).Seconds(), res.ResetAfter.Seconds(), 1)
	require.Equal(t, limit, res.Limit)
	require.False(t, res.Local)

	res, err = l.AllowN(t.Context(), "acme", "events", limit, 10)
	require.NoError(t, err)
	require.Equal(t, 6, res.Allowed, "exactly the units left")
	require.Zero(t, res.Remaining)
	require.InDelta(t, 100, res.RetryAfter.Seconds(), 1, "one unit refills in 100s")
	require.InDelta(t, 1000, res.ResetAfter.Seconds(), 1)

	res, err = l.AllowN(t.Context(), "acme", "events", limit, 1)
	require.NoError(t, err)
	require.Zero(t, res.Allowed)
	require.Zero(t, res.Remaining)
	require.InDelta(t, 100, res.RetryAfter.Seconds(), 1)

	// n = 0 takes nothing and reports the state.
	res, err = l.AllowN(t.Context(), "acme", "events", limit, 0)
	require.NoError(t, err)
	require.Zero(t, res.Allowed)
	require.Zero(t, res.Remaining)
	require.Zero(t, res.RetryAfter)

	// More than the burst from a full bucket: the burst.
	res, err = l.AllowN(t.Context(), "acme", "big", limit, 25)
	require.NoError(t, err)
	require.Equal(t, 10, res.Allowed)

	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_decisions_total", "kind", "events", "result", "allowed")-1, "n=4 and n=0")
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_decisions_total", "kind", "events", "result", "partial"))
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_decisions_total", "kind", "events", "result", "limited"))
	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_decisions_total", "kind", "big", "result", "partial"))
	require.Zero(t, metricValue(t, reg, "abacus_ratelimit_fallback_active"))
}

// TestAllowNPartialKeepsFractions checks that partial grants do not lose
// the fraction of a unit that has refilled: half a unit plus half a unit
// is one unit.
func TestAllowNPartialKeepsFractions(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	l, _, _ := newTestLimiter(t, rdb, Config{})
	limit := Limit{Rate: 0.01, Burst: 10}
	key := "rate:abacus:rl:acme:events"
	interval := 100.0 // seconds per unit

	res, err := l.AllowN(t.Context(), "acme", "events", limit, 10)
	require.NoError(t, err)
	require.Equal(t, 10, res.Allowed)
	// Move the bucket's theoretical arrival time back by 2.5 units: 2.5 units
	// are available now.
	tat, err := rdb.Get(t.Context(), key).Float64()
	require.NoError(t, err)
	require.NoError(t, rdb.Set(t.Context(), key, tat-2.5*interval, time.Hour).Err())

	res, err = l.AllowN(t.Context(), "acme", "events", limit, 5)
	require.NoError(t, err)
	require.Equal(t, 2, res.Allowed)
	// Half a unit is left: the next one is 50s away, not 100s.
	require.InDelta(t, 50, res.RetryAfter.Seconds(), 1)
}

func TestAllowNFractionalRates(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	tests := []struct {
		tenant tenancy.ID
		rate   float64
	}{
		{tenant: "half", rate: 0.5},
		{tenant: "third", rate: 1.0 / 3},
		{tenant: "odd", rate: 1234.5},
		{tenant: "slow", rate: 0.001},
	}
	for _, tt := range tests {
		t.Run(string(tt.tenant), func(t *testing.T) {
			t.Parallel()
			limit := Limit{Rate: tt.rate, Burst: 1}
			res, err := l.AllowN(t.Context(), tt.tenant, "requests", limit, 1)
			require.NoError(t, err)
			require.Equal(t, 1, res.Allowed)
			res, err = l.AllowN(t.Context(), tt.tenant, "requests", limit, 1)
			require.NoError(t, err)
			require.Zero(t, res.Allowed)
			// The next unit is one interval after the first, minus the
			// little time between the two calls.
			interval := 1 / tt.rate
			require.LessOrEqual(t, res.RetryAfter.Seconds(), max(interval*1.001, minRetryAfter.Seconds()))
			require.Greater(t, res.RetryAfter.Seconds(), interval*0.999-1)
			if interval > minRetryAfter.Seconds() {
				// With a burst of 1 the bucket is full again as soon as one
				// unit fits.
				require.InDelta(t, res.ResetAfter.Seconds(), res.RetryAfter.Seconds(), interval*1e-3)
			}
		})
	}
}

func TestAllowNIsolatesTenantsAndKinds(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	limit := Limit{Rate: 0.01, Burst: 5}
	take := func(tenant tenancy.ID, kind string, n int) int {
		res, err := l.AllowN(t.Context(), tenant, kind, limit, n)
		require.NoError(t, err)
		return res.Allowed
	}
	require.Equal(t, 5, take("acme", "events", 5))
	require.Zero(t, take("acme", "events", 1))
	require.Equal(t, 5, take("globex", "events", 5), "another tenant has its own bucket")
	require.Equal(t, 5, take("acme", "requests", 5), "another kind has its own bucket")
	require.Zero(t, take("globex", "events", 1))
}

func TestAllowNConcurrentNeverExceeds(t *testing.T) {
	t.Parallel()
	// Two limiters stand for two nodes sharing one Redis.
	rdb := redisClient(t)
	a, _, _ := newTestLimiter(t, rdb, Config{})
	b, _, _ := newTestLimiter(t, rdb, Config{})
	limit := Limit{Rate: 0.01, Burst: 500}
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for i := range 20 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			for range 10 {
				res, err := l.AllowN(t.Context(), "acme", "events", limit, 7)
				require.NoError(t, err)
				require.False(t, res.Local)
				mu.Lock()
				total += res.Allowed
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 500, total, "1400 asked, exactly the burst granted")
}
