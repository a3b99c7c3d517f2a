package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
)

// Bounds of the probes.
const (
	// probeAge is how far before the start of the phase the minute of probe 0 lies: probe n's
	// event is n minutes later, so every probe of a run has a minute of its own, in the past,
	// within the default event time window.
	probeAge = 24 * time.Hour
	// maxProbes bounds the probes of a run, so that the last one's minute is still in the past.
	maxProbes = 1000
	// probeCallTimeout bounds one Ingest or GetTimeSeries call.
	probeCallTimeout = 5 * time.Second
	// maxErrorSamples is how many distinct errors a result keeps.
	maxErrorSamples = 5
)

// A probe is one event of the probe tenant, of the run's probe event type, in a minute of its
// own, sent through Ingest. Once Ingest acknowledged it, it is pending until GetTimeSeries
// counts 1 in its minute. One poller reads the count of every pending probe's minute with one
// GetTimeSeries call every poll interval, so the queries cost the same however many probes are
// pending (the consumer falling behind must not make the probes a load of their own).
type prober struct {
	ingest    ingestv1.IngestServiceClient
	query     queryv1.QueryServiceClient
	auth      metadata.MD
	runID     string
	eventType string
	// base is the minute of probe 0's event.
	base  time.Time
	poll  time.Duration
	limit time.Duration

	mu sync.Mutex
	// pending holds when Ingest acknowledged each probe not yet counted by GetTimeSeries.
	pending      map[int]time.Time
	sent         int
	visible      []time.Duration // ack to visible, of the probes seen
	ingestCalls  []time.Duration // of the probes acknowledged
	timedOut     int
	failed       int
	polls        int
	pollErrors   int
	errorSamples []string
}

func newProber(conn grpc.ClientConnInterface, key loadgen.TenantKey, runID string, start time.Time, poll, limit time.Duration) *prober {
	return &prober{
		ingest:    ingestv1.NewIngestServiceClient(conn),
		query:     queryv1.NewQueryServiceClient(conn),
		auth:      metadata.Pairs("authorization", "Bearer "+key.Secret),
		runID:     runID,
		eventType: "probe." + runID,
		base:      start.UTC().Truncate(time.Minute).Add(-probeAge),
		poll:      poll,
		limit:     limit,
		pending:   make(map[int]time.Time),
	}
}

// minute is the minute of probe n's event.
func (p *prober) minute(n int) time.Time { return p.base.Add(time.Duration(n) * time.Minute) }

// run sends up to count probes (at most maxProbes), one every interval until until, each on a
// goroutine of its own, and polls until every probe is resolved: seen, timed out, or failed.
// When ctx ends, the probes still pending count as failed.
func (p *prober) run(ctx context.Context, interval time.Duration, count int, until time.Time) {
	ctx = metadata.NewOutgoingContext(ctx, p.auth)
	sendingDone := make(chan struct{})
	var poller sync.WaitGroup
	poller.Go(func() { p.pollUntilResolved(ctx, sendingDone) })
	var senders sync.WaitGroup
	tick := time.NewTicker(interval)
send:
	for n := 0; n < min(count, maxProbes) && time.Now().Before(until); n++ {
		senders.Go(func() { p.send(ctx, n) })
		select {
		case <-tick.C:
		case <-ctx.Done():
			break send
		}
	}
	tick.Stop()
	senders.Wait()
	close(sendingDone)
	poller.Wait()
	if err := ctx.Err(); err != nil {
		p.abandon(err)
	}
}

// send ingests probe n's event and, once acknowledged, makes it pending.
func (p *prober) send(ctx context.Context, n int) {
	sent := time.Now()
	cctx, cancel := context.WithTimeout(ctx, probeCallTimeout)
	resp, err := p.ingest.Ingest(cctx, &ingestv1.IngestRequest{Events: []*ingestv1.Event{{
		EventId:   fmt.Sprintf("%s-probe-%06d", p.runID, n),
		Type:      p.eventType,
		UserId:    "probe",
		Timestamp: timestamppb.New(p.minute(n)),
	}}})
	cancel()
	acked := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	switch {
	case err != nil:
		p.fail(fmt.Errorf("ingest: %w", err))
	case resp.GetAccepted() != 1:
		p.fail(fmt.Errorf("ingest: not accepted: %v", resp.GetRejected()))
	default:
		p.ingestCalls = append(p.ingestCalls, acked.Sub(sent))
		p.pending[n] = acked
	}
}

// fail counts a failed probe; p.mu must be held.
func (p *prober) fail(err error) {
	p.failed++
	p.sample(err)
}

// sample keeps err's message if it is new and there is room; p.mu must be held.
func (p *prober) sample(err error) {
	msg := err.Error()
	for _, s := range p.errorSamples {
		if s == msg {
			return
		}
	}
	if len(p.errorSamples) < maxErrorSamples {
		p.errorSamples = append(p.errorSamples, msg)
	}
}

// pollUntilResolved polls every poll interval while probes are pending, until sending is done
// and none is pending, or ctx ends (run then counts the probes left pending as failed).
func (p *prober) pollUntilResolved(ctx context.Context, sendingDone <-chan struct{}) {
	for {
		started := time.Now()
		done := isClosed(sendingDone) // before reading pending: no probe is added after it
		lo, hi, ok := p.pendingRange()
		switch {
		case ok:
			p.pollOnce(ctx, lo, hi)
		case done:
			return
		}
		select {
		case <-time.After(time.Until(started.Add(p.poll))):
		case <-ctx.Done():
			return
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pendingRange returns the lowest and highest pending probe, and whether any is pending.
func (p *prober) pendingRange() (lo, hi int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := range p.pending {
		if !ok || n < lo {
			lo = n
		}
		if !ok || n > hi {
			hi = n
		}
		ok = true
	}
	return lo, hi, ok
}

// pollOnce reads the counts of the minutes of probes lo to hi and resolves the pending probes
// it counts, and those pending for longer than the probe timeout.
func (p *prober) pollOnce(ctx context.Context, lo, hi int) {
	cctx, cancel := context.WithTimeout(ctx, probeCallTimeout)
	resp, err := p.query.GetTimeSeries(cctx, &queryv1.GetTimeSeriesRequest{
		EventType: p.eventType, Metric: queryv1.Metric_METRIC_COUNT, Granularity: queryv1.Granularity_GRANULARITY_MINUTE,
		Start: timestamppb.New(p.minute(lo)), End: timestamppb.New(p.minute(hi + 1)),
	})
	cancel()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polls++
	if err != nil {
		p.pollErrors++
		p.sample(fmt.Errorf("get time series: %w", err))
	} else {
		p.resolveSeen(resp, now)
	}
	for n, acked := range p.pending {
		if now.Sub(acked) >= p.limit {
			p.timedOut++
			p.visible = append(p.visible, p.limit)
			delete(p.pending, n)
		}
	}
}

// resolveSeen resolves the pending probes whose minute resp counts, as seen at now; p.mu must be
// held.
func (p *prober) resolveSeen(resp *queryv1.GetTimeSeriesResponse, now time.Time) {
	for _, s := range resp.GetSeries() {
		for _, pt := range s.GetPoints() {
			if pt.GetValue() < 1 {
				continue
			}
			n := int(pt.GetTime().AsTime().Sub(p.base) / time.Minute)
			if acked, ok := p.pending[n]; ok {
				p.visible = append(p.visible, now.Sub(acked))
				delete(p.pending, n)
			}
		}
	}
}

// abandon counts the probes still pending as failed.
func (p *prober) abandon(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := range p.pending {
		p.fail(fmt.Errorf("not resolved: %w", err))
		delete(p.pending, n)
	}
}

// result summarizes the probes.
func (p *prober) result() *freshnessResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &freshnessResult{
		AckToVisible: summarize(p.visible),
		IngestCall:   summarize(p.ingestCalls),
		Probes:       p.sent,
		TimedOut:     p.timedOut,
		Failed:       p.failed,
		Polls:        p.polls,
		PollErrors:   p.pollErrors,
		ErrorSamples: p.errorSamples,
	}
}
