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
//
// It also proves each partition's watermark: a time before which every
// event accepted into the partition has been applied. A probe lists the
// partition's end offset at time at; every record acknowledged before at
// lies below that offset, so once the stored position reaches it, at is a
// watermark. Probes wait in order until a commit reaches them.
type progress struct {
	m *metrics

	mu      sync.Mutex
	next    map[topicPartition]int64
	events  int64     // committed since the last rate sample
	sampled time.Time // when the rate was last sampled
	// probes waiting for the position to reach their end offset, oldest
	// first; watermark is the latest proved, stored the latest stored.
	probes    map[topicPartition][]probe
	watermark map[topicPartition]time.Time
	stored    map[topicPartition]time.Time
}

// probe is a partition's end offset as listed at a time.
type probe struct {
	at  time.Time
	end int64
}

// maxProbes bounds the probes waiting per partition. When a consumer lags
// far behind, the oldest are dropped: a later probe proves a later
// watermark anyway, only further in the future.
const maxProbes = 64

func newProgress(m *metrics) *progress {
	return &progress{
		m: m, next: make(map[topicPartition]int64), sampled: time.Now(),
		probes: make(map[topicPartition][]probe), watermark: make(map[topicPartition]time.Time),
		stored: make(map[topicPartition]time.Time),
	}
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
			tp := topicPartition{topic, part}
			delete(p.next, tp)
			delete(p.probes, tp)
			delete(p.watermark, tp)
			delete(p.stored, tp)
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
		p.reached(tp, n)
		if hwm, ok := highWatermarks[tp]; ok {
			p.m.lag.WithLabelValues(tp.topic, partitionLabel(tp.partition)).Set(float64(max(hwm-n, 0)))
		}
	}
}

// reached pops the probes of tp whose end offset the position next has
// reached, advancing its watermark to the latest of them. p.mu is held.
func (p *progress) reached(tp topicPartition, next int64) {
	probes := p.probes[tp]
	i := 0
	for ; i < len(probes) && probes[i].end <= next; i++ {
		if probes[i].at.After(p.watermark[tp]) {
			p.watermark[tp] = probes[i].at
		}
	}
	if i > 0 {
		p.probes[tp] = probes[i:]
	}
}

// probe records the end offsets listed at time at: partitions whose position
// is there already get at as their watermark, the others a waiting probe.
// A partition whose position is "the beginning" uses its listed start.
func (p *progress) probe(at time.Time, starts, ends kadm.ListedOffsets) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eachListed(starts, ends, func(tp topicPartition, next, end int64) {
		probes := p.probes[tp]
		if len(probes) == maxProbes {
			probes = probes[1:]
		}
		p.probes[tp] = append(probes, probe{at: at, end: end})
		p.reached(tp, next)
	})
}

// eachListed calls fn with the position and listed end offset of every
// owned partition the listing covers; a position at "the beginning" is the
// listed start offset. p.mu is held.
func (p *progress) eachListed(starts, ends kadm.ListedOffsets, fn func(tp topicPartition, next, end int64)) {
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
		fn(tp, next, end.Offset)
	}
}

// unstored returns the watermarks of topic's partitions proved since they
// were last stored.
func (p *progress) unstored(topic string) map[int32]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int32]time.Time)
	for tp, w := range p.watermark {
		if tp.topic == topic && w.After(p.stored[tp]) {
			out[tp.partition] = w
		}
	}
	return out
}

// markStored records that the database holds watermarks, and sets the age
// gauge from the oldest watermark of the owned partitions (now).
func (p *progress) markStored(topic string, watermarks map[int32]time.Time, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for part, w := range watermarks {
		tp := topicPartition{topic, part}
		if _, owned := p.next[tp]; owned && w.After(p.stored[tp]) {
			p.stored[tp] = w
		}
	}
	var oldest time.Time
	for tp := range p.next {
		w, ok := p.stored[tp]
		if !ok {
			return // a partition without a watermark: no age to tell
		}
		if oldest.IsZero() || w.Before(oldest) {
			oldest = w
		}
	}
	if !oldest.IsZero() {
		p.m.watermarkAge.Set(now.Sub(oldest).Seconds())
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
	p.eachListed(starts, ends, func(tp topicPartition, next, end int64) {
		p.m.lag.WithLabelValues(tp.topic, partitionLabel(tp.partition)).Set(float64(max(end-next, 0)))
	})
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
// the processing rate every Config.LagInterval, and proves and stores the
// partitions' watermarks every Config.WatermarkInterval, until ctx ends.
// After each batch the lag is set from the fetch's high watermark anyway;
// this loop is what keeps it true while no batch commits (a database outage,
// a stuck batch), when it must grow rather than freeze.
func (c *Consumer) lagLoop(ctx context.Context, cl *kgo.Client) {
	adm := kadm.NewClient(cl)
	lag := time.NewTicker(c.cfg.LagInterval)
	defer lag.Stop()
	marks := time.NewTicker(c.cfg.WatermarkInterval)
	defer marks.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-lag.C:
			c.progress.sampleRate(now)
			if starts, ends, ok := c.listOffsets(ctx, adm); ok {
				c.progress.refresh(starts, ends)
			}
		case <-marks.C:
			c.proveWatermarks(ctx, adm, cl)
		}
	}
}

// listOffsets lists the end offsets of the event-log topic, and its start
// offsets too when an owned partition starts at the beginning. It reports
// false when nothing is owned or the listing failed.
func (c *Consumer) listOffsets(ctx context.Context, adm *kadm.Client) (starts, ends kadm.ListedOffsets, ok bool) {
	owned, anyAtStart := c.progress.owned()
	if owned == 0 {
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, lagRequestTimeout)
	defer cancel()
	// Partitions the listing failed for keep their last value (refresh
	// and probe skip them).
	ends, err := adm.ListEndOffsets(ctx, eventlog.Topic)
	if err == nil && anyAtStart {
		starts, err = adm.ListStartOffsets(ctx, eventlog.Topic)
	}
	if err != nil {
		// The brokers may be restarting; the next tick tries again, and a
		// batch that commits meanwhile sets the lag it knows.
		if ctx.Err() == nil {
			c.logger.DebugContext(ctx, "rollup offset listing failed", slog.Any("error", err))
		}
		return nil, nil, false
	}
	return starts, ends, true
}

// proveWatermarks probes the end offsets (the time is taken before the
// listing is sent, so every record acknowledged before it is below the
// listed offsets) and stores the watermarks that advanced, fenced by this
// member's generation. A failed write is tried again at the next tick.
func (c *Consumer) proveWatermarks(ctx context.Context, adm *kadm.Client, cl *kgo.Client) {
	at := time.Now()
	if starts, ends, ok := c.listOffsets(ctx, adm); ok {
		c.progress.probe(at, starts, ends)
	}
	marks := c.progress.unstored(eventlog.Topic)
	if len(marks) == 0 {
		return
	}
	_, generation := cl.GroupMetadata()
	if generation < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lagRequestTimeout)
	defer cancel()
	if err := c.store.AdvanceWatermarks(ctx, c.cfg.Group, eventlog.Topic, generation, marks); err != nil {
		if ctx.Err() == nil {
			c.logger.DebugContext(ctx, "rollup watermark write failed", slog.Any("error", err))
		}
		return
	}
	c.progress.markStored(eventlog.Topic, marks, time.Now())
}

// sketchMergeLimit is how many pending rows of each coarse level one merge
// transaction rebuilds.
const sketchMergeLimit = 500

// sketchLoop merges the pending hourly and daily unique-user sketches every
// Config.SketchInterval until ctx ends, each time until none is left that
// can be merged. A failure is logged and tried again at the next tick;
// readers of a pending row merge the finer rows themselves meanwhile.
func (c *Consumer) sketchLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.SketchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := c.store.MergeCoarseSketches(ctx, sketchMergeLimit)
			if err != nil {
				if ctx.Err() == nil {
					c.m.sketchFailures.Inc()
					c.logger.DebugContext(ctx, "rollup sketch merge failed", slog.Any("error", err))
				}
				break
			}
			c.m.sketchesMerged.Add(float64(n))
			if n < sketchMergeLimit {
				break
			}
		}
	}
}
