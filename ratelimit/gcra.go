package ratelimit

import (
	"context"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// maxPartialAttempts bounds the extra Redis calls of a partial grant (see
// redisAllow).
const maxPartialAttempts = 2

// availSlack absorbs floating point noise when the available units are
// derived from a reply: 2.9999999 units available are 3.
const availSlack = 1e-6

// redisLimit expresses l as redis_rate's integer Rate per Period. The script
// spaces units by Period/Rate seconds, so any rate can be written as a
// whole number of units per 10^k seconds: 0.5/s is 5 per 10s, 1234.5/s is
// 12345 per 10s, 1/3 per second is 3333 per 10000s. The smallest k is
// chosen for which the integer rate is exact to 0.01 %, which at the latest
// happens once it reaches 10^4 (rounding then errs by at most 0.005 %);
// MinRate guarantees that by k = 9.
func redisLimit(l Limit) redis_rate.Limit {
	scaled, period := l.Rate, time.Second
	for range 9 {
		if r := math.Round(scaled); r >= 1e4 || (r >= 1 && math.Abs(r-scaled) <= scaled*1e-4) {
			break
		}
		scaled, period = scaled*10, period*10
	}
	return redis_rate.Limit{Rate: int(math.Round(scaled)), Burst: int(l.Burst), Period: period}
}

// redisAllow takes up to n units in Redis.
//
// redis_rate's AllowAtMost would do it in one call, but when it grants part
// of n it consumes the fractional unit it did not grant as well (its script
// sets the cost to the fractional remainder and Redis truncates the reply),
// so every partial grant loses up to one unit: a client sending batches 100
// times a second against 1000 units/s would get about 5 % less than its
// limit. Instead this asks for all n with the all-or-nothing AllowN, which
// changes nothing when it refuses, and derives from the refusal how many
// whole units are available (its ResetAfter is the bucket's debt); it then
// takes exactly that many. A unit taken meanwhile by another node makes the
// second call refuse too, and it is retried once more with the new figure.
// So a decision costs one call unless it is a partial grant.
func (l *Limiter) redisAllow(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	rl := redisLimit(limit)
	interval := rl.Period.Seconds() / float64(rl.Rate) // seconds per unit
	res, err := l.rr.AllowN(ctx, key, rl, n)
	if err != nil {
		return Result{}, err
	}
	if res.Allowed == n {
		return grantedResult(limit, n, res, interval), nil
	}
	for range maxPartialAttempts {
		avail := float64(limit.Burst) - res.ResetAfter.Seconds()/interval
		m := 0
		if avail >= 1-availSlack {
			m = int(min(float64(n-1), math.Floor(avail+availSlack)))
		}
		if m < 1 {
			return limitedResult(limit, avail, interval, res.ResetAfter), nil
		}
		part, err := l.rr.AllowN(ctx, key, rl, m)
		if err != nil {
			return Result{}, err
		}
		if part.Allowed == m {
			r := grantedResult(limit, m, part, interval)
			r.RetryAfter = max(r.next, minRetryAfter)
			return r, nil
		}
		res = part
	}
	return limitedResult(limit, float64(limit.Burst)-res.ResetAfter.Seconds()/interval, interval, res.ResetAfter), nil
}

// grantedResult is the Result of a redis_rate AllowN that took all m units
// it was asked for.
func grantedResult(limit Limit, m int, res *redis_rate.Result, interval float64) Result {
	r := Result{
		Allowed:    m,
		Limit:      limit,
		Remaining:  int64(max(res.Remaining, 0)),
		ResetAfter: max(res.ResetAfter, 0),
	}
	// After the grant the bucket's debt is ResetAfter; one more unit fits
	// once it is down to (Burst-1) units' worth.
	if left := float64(limit.Burst) - res.ResetAfter.Seconds()/interval; left < 1 {
		r.next = max(seconds((1-left)*interval), minRetryAfter)
	}
	return r
}

// limitedResult is the Result of a refusal with avail units (< 1, or fewer
// than asked after a race) in the bucket.
func limitedResult(limit Limit, avail, interval float64, resetAfter time.Duration) Result {
	wait := max(seconds((1-avail)*interval), minRetryAfter)
	return Result{
		Limit:      limit,
		Remaining:  int64(max(math.Floor(avail), 0)),
		RetryAfter: wait,
		ResetAfter: max(resetAfter, 0),
		next:       wait,
	}
}
