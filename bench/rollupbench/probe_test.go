package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
)

// fakeAbacus ingests probe events and counts them per minute, making each visible to
// GetTimeSeries only after delay more calls (as a rollup that commits a little later would),
// and never those of the minutes in lost.
type fakeAbacus struct {
	ingestv1.IngestServiceClient
	queryv1.QueryServiceClient
	delay     int
	lost      map[time.Time]bool
	failEvery int // every failEvery-th GetTimeSeries fails (0: none)

	mu       sync.Mutex
	calls    int
	ingested map[time.Time]int // minute → the call count when it was ingested
	auth     []string
}

func (f *fakeAbacus) Ingest(ctx context.Context, req *ingestv1.IngestRequest, _ ...grpc.CallOption) (*ingestv1.IngestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromOutgoingContext(ctx)
	f.auth = append(f.auth, md.Get("authorization")...)
	for _, ev := range req.GetEvents() {
		f.ingested[ev.GetTimestamp().AsTime()] = f.calls
	}
	return &ingestv1.IngestResponse{Accepted: int32(len(req.GetEvents()))}, nil
}

func (f *fakeAbacus) GetTimeSeries(_ context.Context, req *queryv1.GetTimeSeriesRequest, _ ...grpc.CallOption) (*queryv1.GetTimeSeriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failEvery > 0 && f.calls%f.failEvery == 0 {
		return nil, errors.New("unavailable")
	}
	var points []*queryv1.Point
	for m := req.GetStart().AsTime(); m.Before(req.GetEnd().AsTime()); m = m.Add(time.Minute) {
		at, ok := f.ingested[m]
		v := 0.0
		if ok && !f.lost[m] && f.calls-at > f.delay {
			v = 1
		}
		points = append(points, &queryv1.Point{Time: timestamppb.New(m), Value: v})
	}
	return &queryv1.GetTimeSeriesResponse{Series: []*queryv1.Series{{Points: points}}}, nil
}

func newTestProber(f *fakeAbacus, limit time.Duration) *prober {
	p := newProber(nil, loadgen.TenantKey{Tenant: "probe-test", Secret: "secret"}, "test", time.Date(2026, 11, 23, 12, 0, 30, 0, time.UTC), time.Millisecond, limit)
	p.ingest, p.query = f, f
	return p
}

func TestProber_Run(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		fake      *fakeAbacus
		limit     time.Duration
		allSeen   bool
		pollFails bool
	}{
		{name: "every probe seen", fake: &fakeAbacus{delay: 3}, limit: time.Minute, allSeen: true},
		{name: "a lost probe times out", fake: &fakeAbacus{delay: 1, lost: map[time.Time]bool{base.Add(time.Minute): true}}, limit: 50 * time.Millisecond},
		{name: "failed polls are retried", fake: &fakeAbacus{delay: 1, failEvery: 3}, limit: time.Minute, allSeen: true, pollFails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fake.ingested = map[time.Time]int{}
			p := newTestProber(tt.fake, tt.limit)
			require.Equal(t, base, p.minute(0))
			p.run(t.Context(), time.Millisecond, 5, time.Now().Add(time.Hour))
			res := p.result()
			require.Equal(t, 5, res.Probes)
			require.Zero(t, res.Failed)
			require.Equal(t, res.Probes, int(res.AckToVisible.Count), "every probe is resolved")
			require.Equal(t, res.Probes, int(res.IngestCall.Count))
			if tt.allSeen {
				require.Zero(t, res.TimedOut)
				require.Less(t, res.AckToVisible.Max, tt.limit)
			} else {
				require.Equal(t, 1, res.TimedOut)
				require.Equal(t, tt.limit, res.AckToVisible.Max, "a timed-out probe counts at the timeout")
			}
			require.Equal(t, tt.pollFails, res.PollErrors > 0)
			require.Positive(t, res.Polls)
			for _, a := range tt.fake.auth {
				require.Equal(t, "Bearer secret", a)
			}
		})
	}
}

func TestProber_AbandonedWhenCanceled(t *testing.T) {
	t.Parallel()
	f := &fakeAbacus{ingested: map[time.Time]int{}, lost: map[time.Time]bool{}}
	for i := range 100 {
		f.lost[time.Date(2026, 11, 22, 12, i, 0, 0, time.UTC)] = true
	}
	p := newTestProber(f, time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx, time.Millisecond, maxProbes, time.Now().Add(time.Hour))
	}()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.sent >= 3
	}, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	res := p.result()
	require.Positive(t, res.Failed, "probes pending when the run ended count as failed")
	require.Equal(t, res.Probes, res.Failed+int(res.AckToVisible.Count))
	require.NotEmpty(t, res.ErrorSamples)
}
