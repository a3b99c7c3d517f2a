package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Bounds of a [Limit]. Rates outside them cannot be expressed precisely to
// the Redis script, and are configuration mistakes anyway.
const (
	// MinRate is the slowest sustained rate, one unit per 100 000 seconds
	// (about 28 hours).
	MinRate = 1e-5
	// MaxRate is the fastest sustained rate, ten million units per second.
	MaxRate = 1e7
	// MaxBurst is the largest burst; counts stay exact in the script's
	// floating point arithmetic up to it.
	MaxBurst = 1 << 53
)

// maxUnits bounds n in one call, for the same reason as MaxBurst.
const maxUnits = 1 << 53

// minRetryAfter is the smallest RetryAfter reported: a refusal always asks
// the client to wait a little, even when the next unit is a few nanoseconds
// away.
const minRetryAfter = time.Millisecond

// Limit is a GCRA limit: a sustained Rate per second and a Burst.
type Limit struct {
	// Rate is the sustained number of units per second, [MinRate] to
	// [MaxRate]; fractions are allowed (0.5 is one unit every two seconds).
	Rate float64
	// Burst is how many units a full bucket holds: at least 1, at most
	// [MaxBurst].
	Burst int64
}

func (l Limit) validate() error {
	var errs []error
	if math.IsNaN(l.Rate) || l.Rate < MinRate || l.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("%w: rate %v per second is outside %v..%v", ErrInvalidArgument, l.Rate, MinRate, MaxRate))
	}
	if l.Burst < 1 || l.Burst > MaxBurst {
		errs = append(errs, fmt.Errorf("%w: burst %d must be 1..%d", ErrInvalidArgument, l.Burst, int64(MaxBurst)))
	}
	return errors.Join(errs...)
}

// Result is the outcome of one AllowN call.
type Result struct {
	// Allowed is how many of the n units were allowed, 0..n: the first
	// Allowed units of a batch may proceed, the rest may not (the semantics
	// of redis_rate's AllowAtMost).
	Allowed int
	// Limit is the limit the decision was made with.
	Limit Limit
	// Remaining is how many units could still be taken right now.
	Remaining int64
	// RetryAfter is, when Allowed < n, how long until at least one more unit
	// fits (always > 0); 0 when Allowed == n.
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// Local is true when the per-node fallback decided because Redis was
	// unreachable.
	Local bool

	// next is how long until one more unit fits after this decision, 0 when
	// one fits now. Unlike RetryAfter it is also set when everything was
	// allowed; AuthFailureGuard uses it to know that an address has no
	// tokens left.
	next time.Duration
}

// Config configures a [Limiter]. The zero value of every field selects its
// default.
type Config struct {
	// KeyPrefix starts every Redis key of the limiter (default
	// "abacus:rl:"). The redis_rate library puts its own "rate:" in front,
	// so a tenant's events bucket is "rate:abacus:rl:{tenant}:events".
	KeyPrefix string
	// RedisTimeout bounds the Redis work of one decision (default 50ms): a
	// slow Redis must not slow ingest. A decision that runs out of time is
	// made locally, as if Redis were down.
	RedisTimeout time.Duration
	// ProbeInterval is, while in fallback, how often one decision is sent to
	// Redis to find out whether it is back (default 1s). Every other decision
	// is made locally without touching Redis.
	ProbeInterval time.Duration
	// LocalShare is the fraction of each limit one node enforces on its own
	// while Redis is unreachable, (0, 1] (default 1.0). With 1.0 every node
	// alone grants the whole limit, so a cluster of N nodes may admit up to
	// N times the limit while Redis is down: availability over precision.
	// Operators who run N nodes behind an even load balancer and prefer
	// precision can set 1/N.
	LocalShare float64
	// LocalTenants bounds the local buckets kept for the fallback, one per
	// (tenant, kind), least recently used evicted first (default 10000). An
	// evicted bucket starts full when next used.
	LocalTenants int
	// Now is the clock of local decisions and of the probe schedule
	// (default time.Now). Redis decisions use the Redis server's clock.
	Now func() time.Time
}

// Defaults of [Config].
const (
	DefaultKeyPrefix     = "abacus:rl:"
	DefaultRedisTimeout  = 50 * time.Millisecond
	DefaultProbeInterval = time.Second
	DefaultLocalShare    = 1.0
	DefaultLocalTenants  = 10000
)

// Upper bounds of [Config] fields.
const (
	maxKeyPrefix    = 128
	maxLocalTenants = 10_000_000
)

// Validate returns every problem with c, joined. Zero values are valid: they
// select the defaults.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("ratelimit: "+format, args...))
		}
	}
	check(len(c.KeyPrefix) <= maxKeyPrefix, "key prefix is %d bytes, at most %d allowed", len(c.KeyPrefix), maxKeyPrefix)
	check(c.RedisTimeout >= 0, "redis timeout must not be negative, got %v", c.RedisTimeout)
	check(c.ProbeInterval >= 0, "probe interval must not be negative, got %v", c.ProbeInterval)
	check(!math.IsNaN(c.LocalShare) && c.LocalShare >= 0 && c.LocalShare <= 1, "local share must be in (0, 1] (0 selects the default 1), got %v", c.LocalShare)
	check(c.LocalTenants >= 0 && c.LocalTenants <= maxLocalTenants, "local tenants must be 0..%d (0 selects the default %d), got %d", maxLocalTenants, DefaultLocalTenants, c.LocalTenants)
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = DefaultRedisTimeout
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.LocalShare == 0 {
		c.LocalShare = DefaultLocalShare
	}
	if c.LocalTenants == 0 {
		c.LocalTenants = DefaultLocalTenants
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Limiter enforces GCRA limits shared by every node through Redis, with a
// per-node fallback while Redis is unreachable. It is safe for concurrent
// use.
type Limiter struct {
	cfg     Config
	rr      *redis_rate.Limiter
	logger  *slog.Logger
	metrics *limiterMetrics
	breaker *breaker
	local   *localBuckets
}

// New returns a Limiter deciding in Redis through rdb. A nil logger discards
// logs; a nil registerer skips metric registration. Nothing runs in the
// background.
func New(rdb redis.UniversalClient, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("ratelimit: nil redis client")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newLimiterMetrics(reg)
	if err != nil {
		return nil, err
	}
	local, err := newLocalBuckets(cfg.LocalTenants, cfg.LocalShare)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:     cfg,
		rr:      redis_rate.NewLimiter(rdb),
		logger:  logger,
		metrics: m,
		local:   local,
	}
	l.breaker = &breaker{
		interval: cfg.ProbeInterval,
		onEnter: func(cause error) {
			m.fallbackActive.Set(1)
			logger.Warn("rate limits fall back to per-node buckets: Redis is unreachable",
				slog.Any("error", cause),
				slog.Float64("local_share", cfg.LocalShare),
				slog.Duration("probe_interval", cfg.ProbeInterval))
		},
		onLeave: func(degradedFor time.Duration) {
			m.fallbackActive.Set(0)
			logger.Info("rate limits are shared through Redis again", slog.Duration("degraded_for", degradedFor))
		},
	}
	return l, nil
}

// AllowN takes up to n units from the bucket named by (tenant, kind). kind
// is a short name such as "events", "requests" or "queries": 1 to 32
// lowercase letters, digits and underscores. n = 0 takes nothing and reports
// the bucket's state.
//
// It returns an error only for invalid arguments (wrapping
// [ErrInvalidArgument]) or a ctx already done when it is called; a Redis
// failure switches to the local fallback and is reported in Result.Local. A
// decision sent to Redis is not abandoned when ctx ends meanwhile (it is
// bounded by Config.RedisTimeout), so its outcome is never lost.
func (l *Limiter) AllowN(ctx context.Context, tenant tenancy.ID, kind string, limit Limit, n int) (Result, error) {
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := validKind(kind); err != nil {
		return Result{}, err
	}
	return l.allowKey(ctx, l.cfg.KeyPrefix+string(tenant)+":"+kind, kind, limit, n, l.local)
}

// allowKey is AllowN for any bucket key: tenant buckets and the
// per-address buckets of AuthFailureGuard share it. kind labels the metrics;
// local holds the fallback buckets of this kind of key, so that keys a client
// can mint (addresses) cannot evict the tenants' fallback buckets.
func (l *Limiter) allowKey(ctx context.Context, key, kind string, limit Limit, n int, local *localBuckets) (Result, error) {
	if err := limit.validate(); err != nil {
		return Result{}, err
	}
	if n < 0 || n > maxUnits {
		return Result{}, fmt.Errorf("%w: n = %d must be 0..%d", ErrInvalidArgument, n, int64(maxUnits))
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("ratelimit: %w", err)
	}
	if start := l.cfg.Now(); l.breaker.attempt(start) {
		res, err := within(context.WithoutCancel(ctx), l.cfg.RedisTimeout, func(ctx context.Context) (Result, error) {
			return l.redisAllow(ctx, key, limit, n)
		})
		if err == nil {
			now := l.cfg.Now()
			l.breaker.answered(start, now)
			local.consume(key, limit, res.Allowed, now)
			l.metrics.record(kind, n, res)
			return res, nil
		}
		l.metrics.redisErrors.Inc()
		l.breaker.failed(l.cfg.Now(), err)
	}
	res := local.allow(key, limit, n, l.cfg.Now())
	l.metrics.fallbackDecisions.WithLabelValues(kind).Inc()
	l.metrics.record(kind, n, res)
	return res, nil
}

// Degraded reports whether the limiter currently decides locally because
// Redis is unreachable (the abacus_ratelimit_fallback_active gauge).
func (l *Limiter) Degraded() bool { return l.breaker.isDegraded() }

// validKind checks a bucket kind: it becomes part of a Redis key and a
// metric label value, so it must be short and plain.
func validKind(kind string) error {
	if len(kind) < 1 || len(kind) > 32 {
		return fmt.Errorf("%w: kind %q must be 1 to 32 characters", ErrInvalidArgument, kind)
	}
	for i := range len(kind) {
		c := kind[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("%w: kind %q may contain only lowercase letters, digits and underscores", ErrInvalidArgument, kind)
		}
	}
	return nil
}

// seconds converts a float number of seconds to a Duration, saturating.
func seconds(s float64) time.Duration {
	d := s * float64(time.Second)
	switch {
	case math.IsNaN(d) || d <= 0:
		return 0
	case d >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(d)
}
