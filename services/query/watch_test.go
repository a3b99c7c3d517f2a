package query_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/tenancy"
)

// tenantKey is the metadata key from which the test server's interceptor
// takes the tenant. It stands in for authentication, which is tested with
// the production interceptor chain elsewhere.
const tenantKey = "x-test-tenant"

// testServer serves a query.Service over an in-process connection.
type testServer struct {
	client queryv1.QueryServiceClient
	// ended receives what each stream handler returned.
	ended chan error
}

// tenantStream overrides the context of a server stream.
type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }

func startServer(t *testing.T, svc *query.Service) *testServer {
	t.Helper()
	ts := &testServer{ended: make(chan error, 16)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			ctx := ss.Context()
			if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(tenantKey)) == 1 {
				ctx = tenancy.NewContext(ctx, tenancy.ID(md.Get(tenantKey)[0]))
			}
			err := handler(srv, &tenantStream{ServerStream: ss, ctx: ctx})
			ts.ended <- err
			return err
		}))
	queryv1.RegisterQueryServiceServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ts.client = queryv1.NewQueryServiceClient(conn)
	return ts
}

// watch opens a watch as tenant ("" for none). Every receive is bounded by
// the stream's deadline, so a missing message fails the test instead of
// hanging it.
func (ts *testServer) watch(t *testing.T, tenant tenancy.ID, req *queryv1.WatchTimeSeriesRequest) (grpc.ServerStreamingClient[queryv1.WatchTimeSeriesResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	if tenant != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, tenantKey, tenant.String())
	}
	stream, err := ts.client.WatchTimeSeries(ctx, req)
	require.NoError(t, err)
	return stream, cancel
}

// handlerResult waits for the server's stream handler to return.
func (ts *testServer) handlerResult(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ts.ended:
		return err
	case <-time.After(30 * time.Second):
		require.FailNow(t, "the watch handler did not return")
		return nil
	}
}

// recvPoints receives until a message with points and returns it; heartbeats
// in between are skipped.
func recvPoints(t *testing.T, stream grpc.ServerStreamingClient[queryv1.WatchTimeSeriesResponse]) *queryv1.WatchTimeSeriesResponse {
	t.Helper()
	for {
		msg, err := stream.Recv()
		require.NoError(t, err)
		if len(msg.GetPoints()) > 0 {
			return msg
		}
	}
}

func watchReq(typ string, start time.Time, end *time.Time) *queryv1.WatchTimeSeriesRequest {
	req := &queryv1.WatchTimeSeriesRequest{
		EventType:   typ,
		Metric:      queryv1.Metric_METRIC_COUNT,
		Granularity: queryv1.Granularity_GRANULARITY_MINUTE,
		Start:       timestamppb.New(start),
	}
	if end != nil {
		req.End = timestamppb.New(*end)
	}
	return req
}

// openWatches reads the open-watches gauge.
func openWatches(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "abacus_query_watches" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	require.FailNow(t, "abacus_query_watches not registered")
	return 0
}

// fastPoll re-reads often so that changes show up quickly; heartbeats are
// off the table unless a test asks for them.
var fastPoll = query.Config{WatchPollInterval: 10 * time.Millisecond, WatchHeartbeat: time.Hour}

func TestWatchSnapshotThenChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastPoll)
	ts := startServer(t, e.svc)
	e.apply(t, event{"acme", "signup", t0.Add(5 * time.Second)})

	end := t0.Add(5 * time.Minute)
	stream, cancel := ts.watch(t, "acme", watchReq("signup", t0.Add(30*time.Second), &end))

	snap, err := stream.Recv()
	require.NoError(t, err)
	require.True(t, snap.GetSnapshot())
	require.NotNil(t, snap.GetTime())
	require.Equal(t, []pt{
		{t0, 1}, {t0.Add(time.Minute), 0}, {t0.Add(2 * time.Minute), 0}, {t0.Add(3 * time.Minute), 0}, {t0.Add(4 * time.Minute), 0},
	}, pts(snap.GetPoints()))
	require.Equal(t, 1.0, openWatches(t, e.reg))

	// Another tenant's event at the same type and range never shows.
	e.apply(t, event{"globex", "signup", t0.Add(3 * time.Minute)})
	e.apply(t, event{"acme", "signup", t0.Add(2*time.Minute + time.Second)})
	msg := recvPoints(t, stream)
	require.False(t, msg.GetSnapshot())
	require.Equal(t, []pt{{t0.Add(2 * time.Minute), 1}}, pts(msg.GetPoints()), "only the changed point")

	e.apply(t, event{"acme", "signup", t0.Add(2 * time.Minute)}, event{"acme", "signup", t0})
	msg = recvPoints(t, stream)
	require.Equal(t, []pt{{t0, 2}, {t0.Add(2 * time.Minute), 2}}, pts(msg.GetPoints()),
		"one batch commits at once, so it shows as one change")

	cancel()
	require.NoError(t, ts.handlerResult(t), "a client that goes away ends the watch without an error")
	require.Equal(t, 0.0, openWatches(t, e.reg))
}

func TestWatchHeartbeat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{WatchPollInterval: 10 * time.Millisecond, WatchHeartbeat: 20 * time.Millisecond})
	ts := startServer(t, e.svc)

	end := t0.Add(2 * time.Minute)
	stream, cancel := ts.watch(t, "acme", watchReq("signup", t0, &end))
	snap, err := stream.Recv()
	require.NoError(t, err)
	require.True(t, snap.GetSnapshot())

	for range 2 {
		beat, err := stream.Recv()
		require.NoError(t, err)
		require.False(t, beat.GetSnapshot())
		require.Empty(t, beat.GetPoints(), "nothing changed, so only heartbeats arrive")
		require.NotNil(t, beat.GetTime())
	}
	cancel()
	require.NoError(t, ts.handlerResult(t))
}

func TestWatchFollowsClock(t *testing.T) {
	t.Parallel()
	clk := newClock(t0.Add(2*time.Minute + 30*time.Second))
	cfg := fastPoll
	cfg.Now = clk.now
	e := newEnv(t, cfg)
	ts := startServer(t, e.svc)
	e.apply(t, event{"acme", "signup", t0.Add(time.Minute)})

	stream, cancel := ts.watch(t, "acme", watchReq("signup", t0, nil))
	snap, err := stream.Recv()
	require.NoError(t, err)
	require.True(t, snap.GetSnapshot())
	require.Equal(t, clk.now(), snap.GetTime().AsTime())
	require.Equal(t, []pt{{t0, 0}, {t0.Add(time.Minute), 1}, {t0.Add(2 * time.Minute), 0}}, pts(snap.GetPoints()),
		"the range ends at the current minute")

	clk.set(t0.Add(4*time.Minute + 10*time.Second))
	msg := recvPoints(t, stream)
	require.Equal(t, []pt{{t0.Add(3 * time.Minute), 0}, {t0.Add(4 * time.Minute), 0}}, pts(msg.GetPoints()),
		"new buckets appear as points, even empty ones")
	require.Equal(t, clk.now(), msg.GetTime().AsTime())

	e.apply(t, event{"acme", "signup", t0.Add(4*time.Minute + 5*time.Second)})
	msg = recvPoints(t, stream)
	require.Equal(t, []pt{{t0.Add(4 * time.Minute), 1}}, pts(msg.GetPoints()))

	cancel()
	require.NoError(t, ts.handlerResult(t))
}

func TestWatchOutgrowsLimits(t *testing.T) {
	t.Parallel()
	clk := newClock(t0.Add(4*time.Minute + 30*time.Second))
	cfg := fastPoll
	cfg.Now = clk.now
	cfg.MaxPoints = 5
	e := newEnv(t, cfg)
	ts := startServer(t, e.svc)

	stream, _ := ts.watch(t, "acme", watchReq("signup", t0, nil))
	snap, err := stream.Recv()
	require.NoError(t, err)
	require.Len(t, snap.GetPoints(), 5)

	clk.add(time.Minute)
	for {
		msg, err := stream.Recv()
		if err != nil {
			require.Equal(t, codes.OutOfRange, status.Code(err), err)
			require.ErrorContains(t, err, "limit 5")
			break
		}
		require.Empty(t, msg.GetPoints(), "no point beyond the limit is sent")
	}
	require.Equal(t, codes.OutOfRange, status.Code(ts.handlerResult(t)))
}

func TestWatchRefused(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	e := newEnv(t, query.Config{Now: clk.now})
	ts := startServer(t, e.svc)

	endBefore := t0.Add(-time.Minute)
	farEnd := t0.Add(10_001 * time.Minute)
	tests := []struct {
		name  string
		req   *queryv1.WatchTimeSeriesRequest
		field string
		want  string
	}{
		{name: "too many buckets", req: watchReq("signup", t0, &farEnd), field: "end", want: "10001 minute buckets, limit 10000"},
		{name: "following from too long ago", req: watchReq("signup", t0.Add(-10_001*time.Minute), nil), field: "start", want: "limit 10000"},
		{name: "end before start", req: watchReq("signup", t0, &endBefore), field: "end", want: "after start"},
		{name: "no metric", req: func() *queryv1.WatchTimeSeriesRequest {
			r := watchReq("signup", t0, nil)
			r.Metric = queryv1.Metric_METRIC_UNSPECIFIED
			return r
		}(), field: "metric", want: "METRIC_COUNT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream, _ := ts.watch(t, "acme", tt.req)
			_, err := stream.Recv()
			requireInvalidArgument(t, err, tt.field, tt.want)
		})
	}
}

func TestWatchNoTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastPoll)
	ts := startServer(t, e.svc)

	stream, _ := ts.watch(t, "", watchReq("signup", t0, nil))
	_, err := stream.Recv()
	require.Error(t, err)
	require.ErrorIs(t, ts.handlerResult(t), tenancy.ErrNoTenant)
}
