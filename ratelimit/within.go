package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// within runs one Redis operation and waits for it at most d.
//
// go-redis applies a context's deadline to socket reads and writes only when
// the client was built with ContextTimeoutEnabled; otherwise a Redis that
// accepts connections but does not answer holds the caller for the client's
// ReadTimeout (seconds). So the wait is bounded here, whatever the client's
// options: on timeout the caller moves on and fn finishes in the background
// within the client's own timeouts. Few such goroutines exist at once,
// because a timeout puts the caller's breaker into fallback, which lets one
// call per probe interval through.
func within[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type outcome struct {
		v   T
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		v, err := fn(ctx)
		done <- outcome{v, err}
	}()
	select {
	case o := <-done:
		return o.v, o.err
	case <-ctx.Done():
		select {
		case o := <-done:
			return o.v, o.err
		default:
		}
		var zero T
		return zero, fmt.Errorf("redis did not answer within %v: %w", d, ctx.Err())
	}
}
