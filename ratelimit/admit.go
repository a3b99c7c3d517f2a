package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Admission is what one ingest batch asks of its tenant's limits: one unit of
// the request rate, N units of the event rate, and N events of the monthly
// quota.
type Admission struct {
	// Requests is the request-rate limit; the batch takes one unit.
	Requests Limit
	// Events is the event-rate limit.
	Events Limit
	// N is the number of valid events asking to be admitted, 0 to maxUnits.
	N int
	// QuotaHard is the monthly quota, 0 for none.
	QuotaHard int64
}

// Admitted is the outcome of [Admitter.Admit].
type Admitted struct {
	// Request is the request-rate decision: Allowed is 1, or 0 when the
	// batch is refused as a whole (and nothing else was taken).
	Request Result
	// Events is the event-rate decision: the first Events.Allowed events fit
	// the rate.
	Events Result
	// Quota is the quota decision over those: the first Quota.Granted (at
	// most Events.Allowed) events are admitted and counted. Only they took
	// units from the event rate.
	Quota QuotaResult
}

// Admitter makes the three decisions of a batch — request rate, event rate,
// monthly quota — in one Redis round trip: a script that runs GCRA on both
// buckets and the quota counter atomically. Ingest makes one such call per
// batch instead of three, which saves Redis and ingest CPU and, on a busy
// machine, the latency of two round trips. While Redis is unreachable it
// decides with its Limiter's per-node buckets and its Quota's fail-open
// counting, with their policies.
//
// Its buckets are its own (GCRA state kept by its script, in keys of the form
// "{prefix}{tenant}:adm:requests"), not those of [Limiter.AllowN]; the quota
// counter is [Quota]'s, so Reserve, Refund and MonthlyEvents see what it
// counts.
type Admitter struct {
	l *Limiter
	q *Quota
}

// NewAdmitter returns an Admitter over l's buckets, breaker and fallback and
// q's counters.
func NewAdmitter(l *Limiter, q *Quota) (*Admitter, error) {
	if l == nil || q == nil {
		return nil, errors.New("ratelimit: admitter needs a limiter and a quota")
	}
	return &Admitter{l: l, q: q}, nil
}

// tatEpochMicros is subtracted from Redis's clock (µs since 1970) so that
// the theoretical arrival times the script keeps as doubles stay small and
// exact to well below a microsecond.
const tatEpochMicros = 1_700_000_000_000_000

// admitScript decides a batch. KEYS: request bucket, event bucket, quota
// counter. ARGV: request interval (µs per unit), request burst, event
// interval, event burst, n, hard quota (0 = none), quota offset (counted on
// this node, not yet in Redis), quota expiry (Unix seconds).
//
// A bucket holds its theoretical arrival time (TAT): the time at which it
// would be empty again had no burst been allowed. k units fit when TAT + k ×
// interval ≤ now + burst × interval. It returns {request ok, request wait
// µs, events fitting the rate, units left, µs until the next unit fits,
// µs until full, events granted, quota used}.
var admitScript = redis.NewScript(`
local t = redis.call("TIME")
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) - tonumber(ARGV[9])

local function tat_of(key)
  local v = tonumber(redis.call("GET", key))
  if v == nil or v < now then return now end
  return v
end
local function fits(tat, interval, burst)
  local f = math.floor((now + burst * interval - tat) / interval + 1e-9)
  if f < 0 then return 0 end
  return f
end
local function store(key, tat)
  local ttl = math.ceil((tat - now) / 1000) + 1
  redis.call("SET", key, string.format("%.4f", tat), "PX", ttl)
end

local req_int, req_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local req_tat = tat_of(KEYS[1])
if fits(req_tat, req_int, req_burst) < 1 then
  return {0, math.ceil(req_tat + req_int - req_burst * req_int - now), 0, 0, 0, 0, 0, 0}
end
store(KEYS[1], req_tat + req_int)

local ev_int, ev_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local ev_tat = tat_of(KEYS[2])
local fit = fits(ev_tat, ev_int, ev_burst)
if fit > n then fit = n end

local granted = fit
local used = tonumber(redis.call("GET", KEYS[3]) or "0")
local hard = tonumber(ARGV[6])
if hard > 0 then
  local room = hard - used - tonumber(ARGV[7])
  if room < granted then granted = room end
  if granted < 0 then granted = 0 end
end
if granted > 0 then
  used = redis.call("INCRBY", KEYS[3], granted)
  redis.call("EXPIREAT", KEYS[3], ARGV[8])
  ev_tat = ev_tat + granted * ev_int
  store(KEYS[2], ev_tat)
end
local left = fits(ev_tat, ev_int, ev_burst)
local wait = 0
if left < 1 then wait = math.ceil(ev_tat + ev_int - ev_burst * ev_int - now) end
return {1, 0, fit, left, wait, math.ceil(ev_tat - now), granted, used}
`)

// micros returns the duration of µs microseconds.
func micros(us int64) time.Duration { return time.Duration(max(us, 0)) * time.Microsecond }

// interval is the µs between two units of l.
func interval(l Limit) float64 { return 1e6 / l.Rate }

// Admit decides a batch of a.N valid events for tenant at now (the quota
// period is the month of now). It returns an error only for invalid
// arguments or a ctx already done when it is called.
func (a *Admitter) Admit(ctx context.Context, tenant tenancy.ID, now time.Time, adm Admission) (Admitted, error) {
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return Admitted{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := errors.Join(adm.Requests.validate(), adm.Events.validate()); err != nil {
		return Admitted{}, err
	}
	if adm.N < 0 || adm.N > maxUnits || adm.QuotaHard < 0 {
		return Admitted{}, fmt.Errorf("%w: n = %d must be 0..%d and the quota not negative", ErrInvalidArgument, adm.N, int64(maxUnits))
	}
	if err := ctx.Err(); err != nil {
		return Admitted{}, fmt.Errorf("ratelimit: admit: %w", err)
	}
	l, q := a.l, a.q
	reqKey := l.cfg.KeyPrefix + string(tenant) + ":adm:requests"
	evKey := l.cfg.KeyPrefix + string(tenant) + ":adm:events"
	start, end := tenancy.MonthPeriod(now)
	quotaKey := q.key(tenant, start)
	out := Admitted{
		Request: Result{Limit: adm.Requests},
		Events:  Result{Limit: adm.Events},
		Quota:   QuotaResult{PeriodStart: start, PeriodEnd: end},
	}

	if begin := l.cfg.Now(); l.breaker.attempt(begin) {
		q.mu.Lock()
		offset := q.entry(quotaKey, start, end).pending
		q.mu.Unlock()
		r, err := within(context.WithoutCancel(ctx), l.cfg.RedisTimeout, func(ctx context.Context) ([]int64, error) {
			return admitScript.Run(ctx, q.rdb, []string{reqKey, evKey, quotaKey},
				interval(adm.Requests), adm.Requests.Burst, interval(adm.Events), adm.Events.Burst,
				adm.N, adm.QuotaHard, offset, end.Add(quotaRetention).Unix(), tatEpochMicros).Int64Slice()
		})
		if err == nil && len(r) != 8 {
			err = fmt.Errorf("ratelimit: admit script returned %d values", len(r))
		}
		if err == nil {
			done := l.cfg.Now()
			l.breaker.answered(begin, done)
			a.fromRedis(&out, adm, r)
			l.local.consume(reqKey, adm.Requests, out.Request.Allowed, done)
			l.local.consume(evKey, adm.Events, out.Quota.Granted, done)
			q.mu.Lock()
			e := q.entry(quotaKey, start, end)
			e.lastUsed = r[7]
			out.Quota.Used = max(r[7]+e.pending, 0)
			q.mu.Unlock()
			l.metrics.record(kindRequests, 1, out.Request)
			if out.Request.Allowed == 1 {
				l.metrics.record(kindEvents, adm.N, out.Events)
			}
			return out, nil
		}
		l.metrics.redisErrors.Inc()
		l.breaker.failed(l.cfg.Now(), err)
	}

	// Redis is unreachable: the node's own buckets and the quota's fail-open.
	t := l.cfg.Now()
	out.Request = l.local.allow(reqKey, adm.Requests, 1, t)
	l.metrics.fallbackDecisions.WithLabelValues(kindRequests).Inc()
	l.metrics.record(kindRequests, 1, out.Request)
	if out.Request.Allowed == 0 {
		return out, nil
	}
	out.Events = l.local.allow(evKey, adm.Events, adm.N, t)
	l.metrics.fallbackDecisions.WithLabelValues(kindEvents).Inc()
	l.metrics.record(kindEvents, adm.N, out.Events)
	qr, err := q.Reserve(ctx, tenant, now, out.Events.Allowed, adm.QuotaHard)
	if err != nil {
		return Admitted{}, err
	}
	out.Quota = qr
	return out, nil
}

// Bucket kinds of the Admitter, for metrics.
const (
	kindRequests = "requests"
	kindEvents   = "events"
)

// fromRedis fills out from the script's reply r.
func (a *Admitter) fromRedis(out *Admitted, adm Admission, r []int64) {
	if r[0] == 0 {
		wait := max(micros(r[1]), minRetryAfter)
		out.Request.RetryAfter, out.Request.next = wait, wait
		return
	}
	out.Request.Allowed = 1
	fit, left, wait, reset, granted := int(r[2]), r[3], micros(r[4]), micros(r[5]), int(r[6])
	out.Events.Allowed = fit
	out.Events.Remaining = left
	out.Events.ResetAfter = reset
	if left < 1 {
		out.Events.next = max(wait, minRetryAfter)
	}
	if fit < adm.N {
		out.Events.RetryAfter = max(out.Events.next, minRetryAfter)
	}
	out.Quota.Granted = granted
}
