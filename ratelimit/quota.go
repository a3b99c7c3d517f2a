package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Defaults and timings of [Quota].
const (
	// DefaultQuotaKeyPrefix starts every quota counter key.
	DefaultQuotaKeyPrefix = "abacus:quota:"
	// quotaRetention is how long a month's counter outlives the month, so
	// that usage of the previous month can still be read.
	quotaRetention = 35 * 24 * time.Hour
	// flushInterval is how often Run adds the counts kept in memory to Redis;
	// it is also how often a fail-open Quota looks for Redis again.
	flushInterval = time.Second
	// finalFlushTimeout bounds the flush when Run's context ends.
	finalFlushTimeout = 5 * time.Second
)

// reserveScript grants min(n, hard - used - offset) events (all n when hard
// is 0), counts them and makes the counter expire quotaRetention after the
// month. offset is what this node counted in memory and has not flushed yet.
// It returns {granted, used after the grant}.
var reserveScript = redis.NewScript(`
local used = tonumber(redis.call("GET", KEYS[1]) or "0")
local n = tonumber(ARGV[1])
local hard = tonumber(ARGV[2])
local offset = tonumber(ARGV[3])
local grant = n
if hard > 0 then
  local room = hard - used - offset
  if room < grant then grant = room end
  if grant < 0 then grant = 0 end
end
if grant > 0 then
  used = redis.call("INCRBY", KEYS[1], grant)
  redis.call("EXPIREAT", KEYS[1], ARGV[4])
end
return {grant, used}
`)

// deltaScript adds a signed delta to a counter, never letting it go below 0,
// and returns the new value.
var deltaScript = redis.NewScript(`
local v = redis.call("INCRBY", KEYS[1], ARGV[1])
if v < 0 then
  redis.call("SET", KEYS[1], "0")
  v = 0
end
redis.call("EXPIREAT", KEYS[1], ARGV[2])
return v
`)

// QuotaConfig configures a [Quota]. The zero value of every field selects
// its default.
type QuotaConfig struct {
	// KeyPrefix starts every counter key (default "abacus:quota:"); a
	// tenant's counter for May 2026 is "abacus:quota:{tenant}:2026-05".
	KeyPrefix string
	// RedisTimeout bounds one Redis call (default 50ms); a reservation that
	// runs out of time is granted fail-open.
	RedisTimeout time.Duration
	// Now is the clock of the fail-open state and of pruning (default
	// time.Now). The quota period always comes from the now argument.
	Now func() time.Time
}

// Validate returns every problem with c, joined. Zero values are valid: they
// select the defaults.
func (c QuotaConfig) Validate() error {
	var errs []error
	if len(c.KeyPrefix) > maxKeyPrefix {
		errs = append(errs, fmt.Errorf("ratelimit: quota key prefix is %d bytes, at most %d allowed", len(c.KeyPrefix), maxKeyPrefix))
	}
	if c.RedisTimeout < 0 {
		errs = append(errs, fmt.Errorf("ratelimit: quota redis timeout must not be negative, got %v", c.RedisTimeout))
	}
	return errors.Join(errs...)
}

func (c QuotaConfig) withDefaults() QuotaConfig {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultQuotaKeyPrefix
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = DefaultRedisTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// QuotaResult is the outcome of one [Quota.Reserve].
type QuotaResult struct {
	// Granted is how many of the n events fit under the hard quota (all n
	// when the quota is 0, unlimited, and when Local).
	Granted int
	// Used is the events counted in the period after this reservation,
	// including those this node counted in memory and has not flushed yet.
	Used int64
	// PeriodStart and PeriodEnd are the quota period, tenancy.MonthPeriod(now).
	PeriodStart, PeriodEnd time.Time
	// Local is true when Redis was unreachable: the reservation was granted
	// fail-open and counted in memory, and Used is the last count seen in
	// Redis plus what is counted in memory.
	Local bool
}

// Quota counts each tenant's events per calendar month (UTC) in Redis
// against a hard quota, failing open while Redis is unreachable; see the
// package documentation for the policy. Run must be running for counts kept
// in memory to reach Redis. It is safe for concurrent use.
type Quota struct {
	cfg     QuotaConfig
	rdb     redis.UniversalClient
	logger  *slog.Logger
	metrics *quotaMetrics
	breaker *breaker

	flushMu sync.Mutex // one Flush at a time, so pruning cannot race a flush

	mu      sync.Mutex
	entries map[string]*quotaEntry // by counter key
}

// quotaEntry is what this node knows about one (tenant, month) counter.
type quotaEntry struct {
	start, end time.Time
	// pending is the net events counted here and not yet added to Redis:
	// fail-open grants minus refunds that could not be applied.
	pending int64
	// lastUsed is the counter's value at Redis's last answer.
	lastUsed int64
}

// NewQuota returns a Quota counting in Redis through rdb. A nil logger
// discards logs; a nil registerer skips metric registration. Nothing starts
// until Run.
func NewQuota(rdb redis.UniversalClient, cfg QuotaConfig, logger *slog.Logger, reg prometheus.Registerer) (*Quota, error) {
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
	m, err := newQuotaMetrics(reg)
	if err != nil {
		return nil, err
	}
	q := &Quota{
		cfg:     cfg,
		rdb:     rdb,
		logger:  logger,
		metrics: m,
		entries: map[string]*quotaEntry{},
	}
	q.breaker = &breaker{
		interval: flushInterval,
		onEnter: func(cause error) {
			m.failOpenActive.Set(1)
			logger.Warn("monthly quotas fail open: Redis is unreachable; reservations are granted and counted in memory until it answers",
				slog.Any("error", cause))
		},
		onLeave: func(degradedFor time.Duration) {
			m.failOpenActive.Set(0)
			logger.Info("monthly quotas are checked in Redis again", slog.Duration("degraded_for", degradedFor))
		},
	}
	return q, nil
}

// key is the counter key of tenant's month starting at start. The tenant ID
// has been validated by tenancy.ParseID (lowercase letters, digits and
// hyphens), so it cannot contain the ":" separator or any other byte that
// could make one tenant's key another's.
func (q *Quota) key(tenant tenancy.ID, start time.Time) string {
	return q.cfg.KeyPrefix + string(tenant) + ":" + start.Format("2006-01")
}

// entry returns the entry of key, creating it. q.mu must be held.
func (q *Quota) entry(key string, start, end time.Time) *quotaEntry {
	e, ok := q.entries[key]
	if !ok {
		e = &quotaEntry{start: start, end: end}
		q.entries[key] = e
	}
	return e
}

// Reserve counts up to n events against tenant's hard quota for the month
// of now, atomically in Redis, and returns how many were granted: min(n,
// hard - used), or all n when hard is 0 (unlimited). When Redis is
// unreachable it grants all n fail-open and counts them in memory (Local).
//
// It returns an error only for invalid arguments (wrapping
// [ErrInvalidArgument]) or a ctx already done when it is called. Once sent
// to Redis a reservation is not abandoned when ctx ends (it is bounded by
// QuotaConfig.RedisTimeout), so a counted reservation is always reported
// and can be refunded.
func (q *Quota) Reserve(ctx context.Context, tenant tenancy.ID, now time.Time, n int, hard int64) (QuotaResult, error) {
	if err := validQuotaArgs(tenant, n); err != nil {
		return QuotaResult{}, err
	}
	if hard < 0 {
		return QuotaResult{}, fmt.Errorf("%w: hard quota %d must not be negative", ErrInvalidArgument, hard)
	}
	if err := ctx.Err(); err != nil {
		return QuotaResult{}, fmt.Errorf("ratelimit: reserve quota: %w", err)
	}
	start, end := tenancy.MonthPeriod(now)
	key := q.key(tenant, start)
	res := QuotaResult{PeriodStart: start, PeriodEnd: end}

	if q.breaker.attempt(q.cfg.Now()) {
		q.mu.Lock()
		offset := q.entry(key, start, end).pending
		q.mu.Unlock()
		r, err := within(context.WithoutCancel(ctx), q.cfg.RedisTimeout, func(ctx context.Context) ([2]int64, error) {
			return q.reserveRedis(ctx, key, n, hard, offset, end)
		})
		if err == nil {
			granted, used := int(r[0]), r[1]
			q.breaker.succeeded(q.cfg.Now())
			q.mu.Lock()
			e := q.entry(key, start, end)
			e.lastUsed = used
			pending := e.pending
			q.mu.Unlock()
			res.Granted, res.Used = granted, max(used+pending, 0)
			return res, nil
		}
		q.breaker.failed(q.cfg.Now(), err)
	}

	q.mu.Lock()
	e := q.entry(key, start, end)
	e.pending += int64(n)
	used := e.lastUsed + e.pending
	q.mu.Unlock()
	q.metrics.failOpen.Inc()
	q.metrics.pending.Add(float64(n))
	res.Granted, res.Used, res.Local = n, max(used, 0), true
	return res, nil
}

// reserveRedis runs reserveScript and returns {granted, used}.
func (q *Quota) reserveRedis(ctx context.Context, key string, n int, hard, offset int64, end time.Time) ([2]int64, error) {
	v, err := reserveScript.Run(ctx, q.rdb, []string{key}, n, hard, offset, end.Add(quotaRetention).Unix()).Int64Slice()
	if err != nil {
		return [2]int64{}, err
	}
	if len(v) != 2 || v[0] < 0 || v[0] > int64(n) {
		return [2]int64{}, fmt.Errorf("ratelimit: unexpected reply %v from the quota script", v)
	}
	return [2]int64{v[0], v[1]}, nil
}

// addDelta runs deltaScript on key and returns the counter's new value.
func (q *Quota) addDelta(ctx context.Context, key string, delta int64, end time.Time) (int64, error) {
	return within(context.WithoutCancel(ctx), q.cfg.RedisTimeout, func(ctx context.Context) (int64, error) {
		return deltaScript.Run(ctx, q.rdb, []string{key}, delta, end.Add(quotaRetention).Unix()).Int64()
	})
}

// Refund gives back n events reserved for the period starting at
// periodStart (events that were then not accepted, e.g. the Kafka write
// failed). Events still counted only in memory are given back there first.
//
// Refund does not stop when ctx is done: the events it gives back must not
// stay counted, and callers often refund because their request failed. When
// Redis is unreachable the refund is kept in memory and applied by the next
// flush. The counter never goes below zero. It returns an error only for
// invalid arguments.
func (q *Quota) Refund(ctx context.Context, tenant tenancy.ID, periodStart time.Time, n int) error {
	if err := validQuotaArgs(tenant, n); err != nil {
		return err
	}
	start, end := tenancy.MonthPeriod(periodStart)
	if !start.Equal(periodStart) {
		return fmt.Errorf("%w: refund period start %s is not the start of a month (UTC)", ErrInvalidArgument, periodStart.Format(time.RFC3339Nano))
	}
	if n == 0 {
		return nil
	}
	key := q.key(tenant, start)
	left := int64(n)

	q.mu.Lock()
	if e, ok := q.entries[key]; ok && e.pending > 0 {
		take := min(e.pending, left)
		e.pending -= take
		left -= take
		q.metrics.pending.Sub(float64(take))
	}
	q.mu.Unlock()
	if left == 0 {
		return nil
	}

	if q.breaker.attempt(q.cfg.Now()) {
		used, err := q.addDelta(ctx, key, -left, end)
		if err == nil {
			q.breaker.succeeded(q.cfg.Now())
			q.mu.Lock()
			q.entry(key, start, end).lastUsed = used
			q.mu.Unlock()
			return nil
		}
		q.breaker.failed(q.cfg.Now(), err)
	}
	q.mu.Lock()
	q.entry(key, start, end).pending -= left
	q.mu.Unlock()
	q.metrics.pending.Sub(float64(left))
	return nil
}

// MonthlyEvents returns the events counted for tenant in the month of now,
// including those this node counted in memory and has not flushed. When
// Redis is unreachable it returns an error wrapping [ErrUnavailable].
func (q *Quota) MonthlyEvents(ctx context.Context, tenant tenancy.ID, now time.Time) (int64, error) {
	if err := validQuotaArgs(tenant, 0); err != nil {
		return 0, err
	}
	start, _ := tenancy.MonthPeriod(now)
	key := q.key(tenant, start)
	v, err := within(ctx, q.cfg.RedisTimeout, func(ctx context.Context) (int64, error) {
		v, err := q.rdb.Get(ctx, key).Int64()
		if errors.Is(err, redis.Nil) {
			return 0, nil
		}
		return v, err
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return 0, fmt.Errorf("ratelimit: monthly events: %w", cerr)
		}
		return 0, fmt.Errorf("%w: monthly events of tenant %s: %w", ErrUnavailable, tenant, err)
	}
	q.mu.Lock()
	if e, ok := q.entries[key]; ok {
		v += e.pending
	}
	q.mu.Unlock()
	return max(v, 0), nil
}

// Run adds the counts kept in memory to Redis every second until ctx ends,
// then once more (best effort, bounded), and returns nil. Counts still not
// flushed then are logged as lost.
func (q *Quota) Run(ctx context.Context) error {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			err := q.Flush(fctx)
			cancel()
			if err != nil {
				if left := q.pendingEvents(); left != 0 {
					q.logger.Error("quota counts kept in memory could not be added to Redis at shutdown; usage misses them",
						slog.Int64("pending_events", left), slog.Any("error", err))
				}
			}
			return nil
		case <-t.C:
			if err := q.Flush(ctx); err != nil && ctx.Err() == nil {
				q.logger.Debug("quota flush failed; retrying", slog.Any("error", err))
			}
		}
	}
}

// Flush adds the counts kept in memory to Redis now and forgets entries of
// past months that have nothing pending. It stops at the first Redis error
// and returns it, wrapping [ErrUnavailable]; what was not flushed stays for
// the next attempt. A Flush that reaches Redis ends the fail-open state.
func (q *Quota) Flush(ctx context.Context) error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()

	type job struct {
		key   string
		delta int64
		end   time.Time
	}
	current, _ := tenancy.MonthPeriod(q.cfg.Now())
	var jobs []job
	q.mu.Lock()
	for key, e := range q.entries {
		switch {
		case e.pending != 0:
			jobs = append(jobs, job{key: key, delta: e.pending, end: e.end})
		case e.start.Before(current):
			delete(q.entries, key)
		}
	}
	q.mu.Unlock()

	if len(jobs) == 0 {
		if !q.breaker.isDegraded() {
			return nil
		}
		// Nothing to flush, but a fail-open spell should end as soon as Redis
		// is back, not with the next reservation.
		_, err := within(context.WithoutCancel(ctx), q.cfg.RedisTimeout, func(ctx context.Context) (string, error) {
			return q.rdb.Ping(ctx).Result()
		})
		if err != nil {
			q.breaker.failed(q.cfg.Now(), err)
			return fmt.Errorf("%w: probe: %w", ErrUnavailable, err)
		}
		q.breaker.succeeded(q.cfg.Now())
		return nil
	}

	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ratelimit: flush quota counts: %w", err)
		}
		// Not canceled with ctx: a delta applied in Redis must also be
		// subtracted here, or the next flush would add it again.
		used, err := q.addDelta(ctx, j.key, j.delta, j.end)
		if err != nil {
			q.breaker.failed(q.cfg.Now(), err)
			return fmt.Errorf("%w: flush quota counts: %w", ErrUnavailable, err)
		}
		q.mu.Lock()
		e := q.entries[j.key] // kept: only Flush deletes, and only entries with nothing pending
		e.pending -= j.delta
		e.lastUsed = used
		q.mu.Unlock()
		q.metrics.pending.Sub(float64(j.delta))
	}
	q.breaker.succeeded(q.cfg.Now())
	return nil
}

// pendingEvents is the net count kept in memory over all entries.
func (q *Quota) pendingEvents() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var sum int64
	for _, e := range q.entries {
		sum += e.pending
	}
	return sum
}

// FailingOpen reports whether reservations are currently granted fail-open
// because Redis is unreachable (the abacus_quota_fail_open_active gauge).
func (q *Quota) FailingOpen() bool { return q.breaker.isDegraded() }

func validQuotaArgs(tenant tenancy.ID, n int) error {
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if n < 0 || n > maxUnits {
		return fmt.Errorf("%w: n = %d must be 0..%d", ErrInvalidArgument, n, int64(maxUnits))
	}
	return nil
}
