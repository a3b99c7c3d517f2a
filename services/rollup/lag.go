package rollup

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/eventlog"
)

// lagRequestTimeout bounds one refresh's offset listing.
const lagRequestTimeout = 10 * time.Second

// progress is where every partition this member owns stands: the next
// offset the database stores for it, which is the consumer's true position
// (-1 while nothing is stored: the start of the partition). It keeps the
// lag series to exactly the owned partitions, and counts the committed
// events behind the processing-rate gauge.
type progress struct {
	m *metrics

	mu      sync.Mutex
	next    map[topicPartition]int64
	events  int64     // committed since the last rate sample
	sampled time.Time // when the rate was last sampled
}

func newProgress(m *metrics) *progress {
	return &progress{m: m, next: make(map[topicPartition]int64), sampled: time.Now()}
}

// assign records the start positions of newly assigned partitions of topic.
func (p *progress) assign(topic string, next map[int32]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for part, n := range next {
		p.next[topicPartition{topic, part}] = n
	}
}

// forget drops partitions this member no longer owns, and their lag series:
// their new owner reports them.
func (p *progress) forget(partitions map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, ps := range partitions {
		for _, part := range ps {
			delete(p.next, topicPartition{topic, part})
			p.m.lag.DeleteLabelValues(topic, partitionLabel(part))
		}
	}
}

// committed records a committed batch: the partitions' new positions, their
// lag against the high watermarks its fetch carried, and its events.
func (p *progress) committed(next, highWatermarks map[topicPartition]int64, events int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events += int64(events)
	for tp, n := range next {
		if _, owned := p.next[tp]; !owned {
			continue // revoked meanwhile; the series belongs to the new owner
		}
		p.next[tp] = n
		if hwm, ok := highWatermarks[tp]; ok {
			p.m.lag.WithLabelValues(tp.topic, partitionLabel(tp.partition)).Set(float64(max(hwm-n, 0)))
		}
	}
}

// owned returns the owned partitions and whether any starts at the
// beginning (so its lag needs the partition's start offset).
func (p *progress) owned() (n int, anyAtStart bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, next := range p.next {
		anyAtStart = anyAtStart || next < 0
	}
	return len(p.next), anyAtStart
}

// refresh sets the lag of every owned partition from the listed offsets.
func (p *progress) refresh(starts, ends kadm.ListedOffsets) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tp, next := range p.next {
		end, ok := ends.Lookup(tp.topic, tp.partition)
		if !ok || end.Err != nil {
			continue
		}
		if next < 0 {
			start, ok := starts.Lookup(tp.topic, tp.partition)
			if !ok || start.Err != nil {
				continue
			}
			next = start.Offset
		}
		p.m.lag.WithLabelValues(tp.topic, partitionLabel(tp.partition)).Set(float64(max(end.Offset-next, 0)))
	}
}

// sampleRate sets the processing-rate gauge to the events committed since
// the last sample per second.
func (p *progress) sampleRate(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if elapsed := now.Sub(p.sampled).Seconds(); elapsed > 0 {
		p.m.eventsPerSecond.Set(float64(p.events) / elapsed)
	}
	p.events, p.sampled = 0, now
}

// highWatermarks are the high watermarks of the partitions in fetches.
func highWatermarks(fetches kgo.Fetches) map[topicPartition]int64 {
	out := make(map[topicPartition]int64)
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		out[topicPartition{p.Topic, p.Partition}] = p.HighWatermark
	})
	return out
}

// lagLoop refreshes the lag gauges from the brokers' end offsets and samples
// the processing rate every Config.LagInterval until ctx ends. After each
// batch the lag is set from the fetch's high watermark anyway; this loop is
// what keeps it true while no batch commits (a database outage, a stuck
// batch), when it must grow rather than freeze.
func (c *Consumer) lagLoop(ctx context.Context, cl *kgo.Client) {
	adm := kadm.NewClient(cl)
	t := time.NewTicker(c.cfg.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.progress.sampleRate(now)
			c.refreshLag(ctx, adm)
		}
	}
}

func (c *Consumer) refreshLag(ctx context.Context, adm *kadm.Client) {
	owned, anyAtStart := c.progress.owned()
	if owned == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lagRequestTimeout)
	defer cancel()
	// Partitions the listing failed for keep their last value (refresh
	// skips them).
	ends, err := adm.ListEndOffsets(ctx, eventlog.Topic)
	var starts kadm.ListedOffsets
	if err == nil && anyAtStart {
		starts, err = adm.ListStartOffsets(ctx, eventlog.Topic)
	}
	if err != nil {
		// The brokers may be restarting; the next tick tries again, and a
		// batch that commits meanwhile sets the lag it knows.
		if ctx.Err() == nil {
			c.logger.DebugContext(ctx, "rollup lag refresh failed", slog.Any("error", err))
		}
		return
	}
	c.progress.refresh(starts, ends)
}
