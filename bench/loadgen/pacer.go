package loadgen

import (
	"context"
	"sync"
	"time"
)

// maxPacerLag is how far behind its schedule the pacer may fall before it forgets the missed
// sends: after the server stalls, the load resumes at the target rate instead of in a burst
// that makes up for the stall.
const maxPacerLag = 100 * time.Millisecond

// pacer spaces the batches of all workers evenly at a target rate: each batch gets the next
// slot of a shared schedule.
type pacer struct {
	interval time.Duration // between two batches

	mu   sync.Mutex
	next time.Time
}

// newPacer returns a pacer for rate events/s in batches of batchSize, or nil for rate 0 (as
// fast as possible).
func newPacer(rate float64, batchSize int) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{interval: time.Duration(float64(batchSize) / rate * float64(time.Second))}
}

// wait blocks until the caller's slot. A nil pacer never waits.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	now := time.Now()
	p.mu.Lock()
	if p.next.Before(now.Add(-maxPacerLag)) {
		p.next = now
	}
	slot := p.next
	p.next = p.next.Add(p.interval)
	p.mu.Unlock()

	d := slot.Sub(now)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
