package loadgen_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/bench/bareserver"
	"github.com/abacus-analytics/abacus/bench/loadgen"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// serve runs srv on a loopback port for the duration of the test and returns its address.
func serve(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func serveIngest(t *testing.T, svc ingestv1.IngestServiceServer) string {
	t.Helper()
	srv := grpc.NewServer()
	ingestv1.RegisterIngestServiceServer(srv, svc)
	return serve(t, srv)
}

func tenants(n int) []loadgen.TenantKey {
	keys := make([]loadgen.TenantKey, n)
	for i := range keys {
		keys[i] = loadgen.TenantKey{Tenant: fmt.Sprintf("tenant-%d", i), Secret: fmt.Sprintf("key-%d", i)}
	}
	return keys
}

func shortRun(target string, n int) loadgen.Config {
	return loadgen.Config{
		Target:           target,
		Tenants:          tenants(n),
		ZipfS:            loadgen.DefaultZipfS,
		BatchSize:        100,
		Streams:          2,
		InFlight:         4,
		Duration:         1200 * time.Millisecond,
		Warmup:           300 * time.Millisecond,
		DrainTimeout:     5 * time.Second,
		ProgressInterval: 200 * time.Millisecond,
		RunID:            "test",
	}
}

// requireBalanced checks that every event sent is accounted for exactly once.
func requireBalanced(t *testing.T, c loadgen.Counts) {
	t.Helper()
	require.Equal(t, c.Events, c.Accepted+c.Rejected+c.Unanswered, "sent = accepted + rejected + unanswered: %+v", c)
}

func TestRun_BareServer(t *testing.T) {
	t.Parallel()
	srv, err := bareserver.NewServer(bareserver.Config{})
	require.NoError(t, err)
	addr := serve(t, srv)

	var mu sync.Mutex
	var progress []loadgen.Progress
	rep, err := loadgen.Run(t.Context(), shortRun(addr, 3), func(p loadgen.Progress) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, p)
	})
	require.NoError(t, err)

	require.Positive(t, rep.Total.Events)
	require.Equal(t, rep.Total.Events, rep.Total.Accepted, "the bare server accepts everything it is sent")
	require.Equal(t, rep.Total.Batches, rep.Total.Answered)
	require.Zero(t, rep.Total.Rejected)
	require.Zero(t, rep.Total.Unanswered)
	require.Equal(t, rep.Total.Batches*100, rep.Total.Events)
	require.Positive(t, rep.Measured.Accepted)
	require.Less(t, rep.Measured.Events, rep.Total.Events, "the warmup is not measured")
	require.Equal(t, rep.Measured.Answered, rep.Latency.Count)
	require.Positive(t, rep.AcceptedPerSecond)
	require.InDelta(t, float64(900*time.Millisecond), float64(rep.Window), float64(50*time.Millisecond))
	require.Zero(t, rep.Errors, "errors: %v", rep.ErrorSamples)
	require.Empty(t, rep.StreamErrors)
	require.LessOrEqual(t, rep.StreamOpens, int64(2*3), "one stream per worker and tenant")
	require.Equal(t, "test", rep.RunID)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, progress)
	require.Equal(t, loadgen.PhaseWarmup, progress[0].Phase)
}

// recordingServer answers every batch as accepted and records, per API key, the ids and
// times of the events it got.
type recordingServer struct {
	ingestv1.UnimplementedIngestServiceServer

	mu      sync.Mutex
	ids     map[string]map[string]int // key → event id → times seen
	events  map[string]int
	minTime int64
	maxTime int64
}

func newRecordingServer() *recordingServer {
	return &recordingServer{ids: map[string]map[string]int{}, events: map[string]int{}, minTime: 1 << 62}
}

func (s *recordingServer) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	auth := md.Get("authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		return status.Error(codes.Unauthenticated, "no bearer token")
	}
	key := strings.TrimPrefix(auth[0], "Bearer ")
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.ids[key] == nil {
			s.ids[key] = map[string]int{}
		}
		for _, ev := range req.GetEvents() {
			s.ids[key][ev.GetEventId()]++
			s.events[key]++
			s.minTime = min(s.minTime, ev.GetTimestamp().GetSeconds())
			s.maxTime = max(s.maxTime, ev.GetTimestamp().GetSeconds())
		}
		s.mu.Unlock()
		if err := stream.Send(&ingestv1.IngestStreamResponse{Sequence: req.GetSequence(), Accepted: int32(len(req.GetEvents()))}); err != nil {
			return err
		}
	}
}

func TestRun_EventIDsAndTenantShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ratio float64
	}{
		{name: "unique ids", ratio: 0},
		{name: "a fifth duplicated", ratio: 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newRecordingServer()
			addr := serveIngest(t, srv)
			cfg := shortRun(addr, 4)
			cfg.DuplicateRatio = tt.ratio
			cfg.ZipfS = 0      // uniform, so that every tenant gets batches
			cfg.BatchSize = 10 // many batches even on a busy machine
			start := time.Now().Unix()
			rep, err := loadgen.Run(t.Context(), cfg, nil)
			require.NoError(t, err)
			requireBalanced(t, rep.Total)
			require.Equal(t, rep.Total.Events, rep.Total.Accepted)

			srv.mu.Lock()
			defer srv.mu.Unlock()
			idPattern := regexp.MustCompile(`^test-[0-9a-f]{4}-[0-9a-f]{16}$`)
			var total, distinct int
			for i, key := range cfg.Tenants {
				ids := srv.ids[key.Secret]
				require.NotEmpty(t, ids, "tenant %d got events", i)
				for id := range ids {
					require.Regexp(t, idPattern, id)
					require.Equal(t, fmt.Sprintf("test-%04x-", i), id[:10], "the id names the tenant")
				}
				total += srv.events[key.Secret]
				distinct += len(ids)
			}
			require.Equal(t, int(rep.Total.Events), total, "the server got every event the report counts")
			require.Equal(t, int(rep.Total.Duplicates), total-distinct, "every duplicate repeats an id, every other id is new")
			if tt.ratio == 0 {
				require.Zero(t, rep.Total.Duplicates)
			} else {
				// The first batch of a tenant cannot repeat an id, so the share is a little lower.
				require.InDelta(t, tt.ratio, float64(rep.Total.Duplicates)/float64(total), 0.08)
			}
			require.GreaterOrEqual(t, srv.minTime, start)
			require.LessOrEqual(t, srv.maxTime, time.Now().Unix())
		})
	}
}

// verdictServer rejects the first two events of every batch: one as rate limited, one as
// invalid.
type verdictServer struct {
	ingestv1.UnimplementedIngestServiceServer
}

func (verdictServer) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		evs := req.GetEvents()
		if err := stream.Send(&ingestv1.IngestStreamResponse{
			Sequence: req.GetSequence(),
			Accepted: int32(len(evs) - 2),
			Rejected: []*ingestv1.RejectedEvent{
				{Index: 0, EventId: evs[0].GetEventId(), Reason: ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED},
				{Index: 1, EventId: evs[1].GetEventId(), Reason: ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE},
			},
		}); err != nil {
			return err
		}
	}
}

func TestRun_CountsRejectedAndThrottled(t *testing.T) {
	t.Parallel()
	addr := serveIngest(t, verdictServer{})
	rep, err := loadgen.Run(t.Context(), shortRun(addr, 2), nil)
	require.NoError(t, err)
	requireBalanced(t, rep.Total)
	require.Zero(t, rep.Total.Unanswered)
	require.Equal(t, 2*rep.Total.Batches, rep.Total.Rejected)
	require.Equal(t, rep.Total.Batches, rep.Total.Throttled)
	require.Equal(t, map[string]int64{
		"REJECT_REASON_RATE_LIMITED": rep.Total.Batches,
		"REJECT_REASON_INVALID_TYPE": rep.Total.Batches,
	}, rep.Total.RejectedByReason)
	require.InDelta(t, float64(rep.Measured.Accepted)/rep.Window.Seconds(), rep.AcceptedPerSecond, 1e-6)
}

// flakyServer ends the first stream of every API key with RESOURCE_EXHAUSTED after answering
// one batch, and the second with UNAVAILABLE before answering any; later streams work.
type flakyServer struct {
	ingestv1.UnimplementedIngestServiceServer
	mu    sync.Mutex
	opens map[string]int
}

func (s *flakyServer) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	key := strings.Join(md.Get("authorization"), "")
	s.mu.Lock()
	s.opens[key]++
	n := s.opens[key]
	s.mu.Unlock()
	if n == 2 {
		return status.Error(codes.Unavailable, "draining")
	}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&ingestv1.IngestStreamResponse{Sequence: req.GetSequence(), Accepted: int32(len(req.GetEvents()))}); err != nil {
			return err
		}
		if n == 1 {
			return status.Error(codes.ResourceExhausted, "too many streams")
		}
	}
}

func TestRun_ReopensFailedStreams(t *testing.T) {
	t.Parallel()
	srv := &flakyServer{opens: map[string]int{}}
	addr := serveIngest(t, srv)
	cfg := shortRun(addr, 2)
	cfg.Streams = 1
	cfg.ZipfS = 0      // uniform, so that both tenants get batches
	cfg.BatchSize = 10 // many batches even on a busy machine
	rep, err := loadgen.Run(t.Context(), cfg, nil)
	require.NoError(t, err)
	requireBalanced(t, rep.Total)
	require.Equal(t, int64(2), rep.StreamErrors["ResourceExhausted"], "first stream of each tenant: %v", rep.StreamErrors)
	require.Equal(t, int64(2), rep.StreamErrors["Unavailable"], "second stream of each tenant: %v", rep.StreamErrors)
	require.Equal(t, int64(6), rep.StreamOpens, "each tenant's stream was reopened twice")
	require.Positive(t, rep.Total.Unanswered, "batches in flight on a failed stream are unanswered")
	require.Greater(t, rep.Total.Accepted, rep.Total.Unanswered, "the load went on after the failures")
	require.Equal(t, int64(4), rep.Errors)
}

// refusingServer refuses every stream as unauthenticated.
type refusingServer struct {
	ingestv1.UnimplementedIngestServiceServer
	opens atomic.Int64
}

func (s *refusingServer) IngestStream(grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	s.opens.Add(1)
	return status.Error(codes.Unauthenticated, "unknown API key")
}

func TestRun_StopsWhenRefused(t *testing.T) {
	t.Parallel()
	srv := &refusingServer{}
	addr := serveIngest(t, srv)
	cfg := shortRun(addr, 1)
	cfg.Duration = time.Minute // ends long before
	rep, err := loadgen.Run(t.Context(), cfg, nil)
	require.Error(t, err)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.ErrorContains(t, err, "tenant-0")
	require.NotContains(t, err.Error(), "key-0", "the secret is not in the error")
	require.Zero(t, rep.Total.Accepted)
	require.LessOrEqual(t, srv.opens.Load(), int64(cfg.Streams), "no retries of a refused stream")
	requireBalanced(t, rep.Total)
}

func TestRun_RateIsCapped(t *testing.T) {
	t.Parallel()
	srv, err := bareserver.NewServer(bareserver.Config{})
	require.NoError(t, err)
	addr := serve(t, srv)
	cfg := shortRun(addr, 2)
	cfg.Rate = 20_000
	cfg.Duration = 1500 * time.Millisecond
	cfg.Warmup = 500 * time.Millisecond
	rep, err := loadgen.Run(t.Context(), cfg, nil)
	require.NoError(t, err)
	require.Equal(t, rep.Total.Events, rep.Total.Accepted)
	// The pacer caps the rate: the window holds at most its slots plus the 100 ms it may lag.
	// (A busy machine can only make the generator slower, so there is no lower bound.)
	require.Positive(t, rep.Measured.Events)
	require.LessOrEqual(t, rep.SentPerSecond, cfg.Rate*1.15, "sent %v events/s", rep.SentPerSecond)
}

func TestRun_InterruptedByContext(t *testing.T) {
	t.Parallel()
	srv, err := bareserver.NewServer(bareserver.Config{})
	require.NoError(t, err)
	addr := serve(t, srv)
	cfg := shortRun(addr, 1)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	rep, err := loadgen.Run(ctx, cfg, func(loadgen.Progress) { once.Do(cancel) })
	require.ErrorIs(t, err, context.Canceled)
	require.Positive(t, rep.Total.Batches, "the report holds what was measured so far")
	requireBalanced(t, rep.Total)
}

func TestRun_InvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := loadgen.Run(t.Context(), loadgen.Config{Target: "192.0.2.1:1"}, nil)
	require.ErrorContains(t, err, "not a loopback address")
	require.ErrorContains(t, err, "no tenants")
}

// stuckServer accepts streams and never reads from them.
type stuckServer struct {
	ingestv1.UnimplementedIngestServiceServer
}

func (stuckServer) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	<-stream.Context().Done()
	return stream.Context().Err()
}

// A server that stops reading blocks the senders in HTTP/2 flow control; the run still ends,
// with every batch sent counted as unanswered.
func TestRun_ServerThatStopsReading(t *testing.T) {
	t.Parallel()
	addr := serveIngest(t, stuckServer{})
	cfg := shortRun(addr, 2)
	cfg.Duration = 500 * time.Millisecond
	cfg.Warmup = 0
	cfg.DrainTimeout = 200 * time.Millisecond
	rep, err := loadgen.Run(t.Context(), cfg, nil)
	require.NoError(t, err)
	require.Positive(t, rep.Total.Batches)
	require.Zero(t, rep.Total.Answered)
	require.Equal(t, rep.Total.Events, rep.Total.Unanswered)
	require.Zero(t, rep.Latency.Count)
}
