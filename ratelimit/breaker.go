package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker tracks whether Redis is usable. While it is not (degraded), callers
// decide locally and only one call per probe interval goes to Redis, so an
// outage costs each request nothing instead of a timeout.
//
// Transitions are reported to onEnter and onLeave exactly once each, under
// the breaker's lock, so a flood of failing requests logs one line.
type breaker struct {
	interval time.Duration
	onEnter  func(cause error)
	onLeave  func(degradedFor time.Duration)

	// fast mirrors degraded for the lock-free path taken by every call while
	// Redis is healthy.
	fast atomic.Bool

	mu        sync.Mutex
	degraded  bool
	since     time.Time // start of the current degraded spell
	nextProbe time.Time
	probing   bool // a probe is in flight; others decide locally
}

// attempt reports whether this call may use Redis. While degraded it admits
// one probe per interval; the caller must then report the outcome with
// succeeded or failed.
func (b *breaker) attempt(now time.Time) (useRedis bool) {
	if !b.fast.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.degraded {
		return true
	}
	if b.probing || now.Before(b.nextProbe) {
		return false
	}
	b.probing = true
	return true
}

// succeeded records that Redis answered; a degraded breaker recovers.
func (b *breaker) succeeded(now time.Time) { b.answered(now, now) }

// answered records that a call started at start got its answer at now. A
// call that started before the current outage was detected says nothing
// about Redis now: calls in flight when one timed out may still succeed, and
// letting them end the outage would flap in and out of the fallback (and log
// each time).
func (b *breaker) answered(start, now time.Time) {
	if !b.fast.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.degraded {
		b.probing = false
		return
	}
	if start.Before(b.since) {
		return
	}
	b.probing = false
	b.degraded = false
	b.fast.Store(false)
	if b.onLeave != nil {
		b.onLeave(now.Sub(b.since))
	}
}

// failed records that Redis could not be used; the next probe is due one
// interval from now.
func (b *breaker) failed(now time.Time, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	b.nextProbe = now.Add(b.interval)
	if b.degraded {
		return
	}
	b.degraded = true
	b.fast.Store(true)
	b.since = now
	if b.onEnter != nil {
		b.onEnter(cause)
	}
}

// isDegraded reports whether callers currently decide locally.
func (b *breaker) isDegraded() bool { return b.fast.Load() }
