package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPacer(t *testing.T) {
	t.Parallel()
	require.Nil(t, newPacer(0, 500), "rate 0 means no pacing")
	require.NoError(t, (*pacer)(nil).wait(t.Context()))

	p := newPacer(100_000, 100) // a batch per millisecond
	require.Equal(t, time.Millisecond, p.interval)
	start := time.Now()
	for range 30 {
		require.NoError(t, p.wait(t.Context()))
	}
	// The 30th slot is 29 ms after the first: never sooner, however fast the caller.
	require.GreaterOrEqual(t, time.Since(start), 29*time.Millisecond)

	// A pacer far behind its schedule forgets the missed slots instead of bursting.
	p.mu.Lock()
	p.next = time.Now().Add(-time.Hour)
	p.mu.Unlock()
	require.NoError(t, p.wait(t.Context()))
	p.mu.Lock()
	require.WithinDuration(t, time.Now().Add(p.interval), p.next, 50*time.Millisecond)
	p.mu.Unlock()
}

func TestPacer_Canceled(t *testing.T) {
	t.Parallel()
	p := newPacer(1, 1000) // a batch every 1000 s
	require.NoError(t, p.wait(t.Context()), "the first slot is now")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, p.wait(ctx), context.Canceled)
}
