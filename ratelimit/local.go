package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// localBuckets are the per-node token buckets used while Redis is
// unreachable, one per key, bounded by an LRU. Each enforces share of the
// limit it is asked for.
type localBuckets struct {
	share float64
	cache *lru.Cache[string, *localBucket]
}

// localBucket serializes the read-then-take of a partial grant, which
// x/time/rate does not offer as one operation.
type localBucket struct {
	mu  sync.Mutex
	lim *rate.Limiter
}

func newLocalBuckets(size int, share float64) (*localBuckets, error) {
	cache, err := lru.New[string, *localBucket](size)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: local buckets: %w", err)
	}
	return &localBuckets{share: share, cache: cache}, nil
}

// scaled is the part of limit one node enforces alone: share of the rate
// and of the burst, the burst at least 1.
func (lb *localBuckets) scaled(limit Limit) (rate.Limit, int) {
	burst := max(1, int(math.Floor(float64(limit.Burst)*lb.share)))
	return rate.Limit(limit.Rate * lb.share), burst
}

// bucket returns key's local bucket, created full when absent, locked, and
// set to limit (keeping its tokens), with the rate and burst it enforces.
// The caller unlocks b.mu.
func (lb *localBuckets) bucket(key string, limit Limit, now time.Time) (b *localBucket, r rate.Limit, burst int) {
	r, burst = lb.scaled(limit)
	b, ok := lb.cache.Get(key)
	if !ok {
		fresh := &localBucket{lim: rate.NewLimiter(r, burst)}
		if prev, found, _ := lb.cache.PeekOrAdd(key, fresh); found {
			b = prev
		} else {
			b = fresh
		}
	}
	b.mu.Lock()
	if b.lim.Limit() != r {
		b.lim.SetLimitAt(now, r)
	}
	if b.lim.Burst() != burst {
		b.lim.SetBurstAt(now, burst)
	}
	return b, r, burst
}

// allow takes up to n units from key's local bucket at now. A bucket whose
// limit changed since its last use is adjusted, keeping its tokens.
func (lb *localBuckets) allow(key string, limit Limit, n int, now time.Time) Result {
	b, r, burst := lb.bucket(key, limit, now)
	defer b.mu.Unlock()
	tokens := min(b.lim.TokensAt(now), float64(burst))
	m := 0
	if tokens >= 1 {
		m = int(min(float64(n), math.Floor(tokens)))
	}
	if m > 0 && !b.lim.AllowN(now, m) {
		// Cannot happen under b.mu (m <= tokens), but never grant what the
		// bucket refused.
		m = 0
	}
	left := tokens - float64(m)
	res := Result{
		Allowed:    m,
		Limit:      limit,
		Remaining:  int64(max(math.Floor(left), 0)),
		ResetAfter: seconds((float64(burst) - left) / float64(r)),
		Local:      true,
	}
	if left < 1 {
		res.next = max(seconds((1-left)/float64(r)), minRetryAfter)
	}
	if m < n {
		res.RetryAfter = max(res.next, minRetryAfter)
	}
	return res
}

// consume takes up to n units from key's local bucket without deciding
// anything: while Redis decides, the node's local buckets follow what it
// granted, so that a fallback (a Redis outage, or a slow answer under load)
// starts from this node's recent use instead of a full burst. Without it,
// every flap between Redis and the fallback would grant one more burst.
func (lb *localBuckets) consume(key string, limit Limit, n int, now time.Time) {
	if n <= 0 {
		return
	}
	b, _, _ := lb.bucket(key, limit, now)
	defer b.mu.Unlock()
	take := min(float64(n), math.Floor(b.lim.TokensAt(now)))
	if take >= 1 {
		b.lim.AllowN(now, int(take))
	}
}
