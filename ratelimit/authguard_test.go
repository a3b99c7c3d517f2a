package ratelimit

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// callFrom returns a context of a call from ip (a TCP peer), with the given
// x-forwarded-for values.
func callFrom(ctx context.Context, ip string, forwardedFor ...string) context.Context {
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
	if len(forwardedFor) > 0 {
		md := metadata.MD{}
		for _, v := range forwardedFor {
			md.Append("x-forwarded-for", v)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return ctx
}

// authHandler is a handler standing for the auth interceptor and what
// follows it: it answers with err and counts its calls.
type authHandler struct {
	calls atomic.Int64
}

func (h *authHandler) unary(err error) grpc.UnaryHandler {
	return func(context.Context, any) (any, error) {
		h.calls.Add(1)
		return "ok", err
	}
}

var (
	errUnauthenticated = status.Error(codes.Unauthenticated, "invalid credentials")
	errPermission      = status.Error(codes.PermissionDenied, "API key lacks scope")
	unaryInfo          = &grpc.UnaryServerInfo{FullMethod: "/abacus.ingest.v1.IngestService/Ingest"}
)

func newTestGuard(t *testing.T, l *Limiter, cfg AuthFailureConfig) *AuthFailureGuard {
	t.Helper()
	g, err := NewAuthFailureGuard(l, cfg)
	require.NoError(t, err)
	return g
}

// requireAuthRateLimited checks a refusal and returns its retry delay.
func requireAuthRateLimited(t *testing.T, err error) time.Duration {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	require.Contains(t, st.Message(), "too many failed authentications from this address")
	var retry time.Duration
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	require.Positive(t, retry, "RetryInfo")
	require.NotNil(t, info, "ErrorInfo")
	require.Equal(t, "AUTH_RATE_LIMITED", info.GetReason())
	require.Equal(t, "abacus.dev", info.GetDomain())
	return retry
}

func TestNewAuthFailureGuard(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{})
	_, err := NewAuthFailureGuard(nil, DefaultAuthFailureConfig())
	require.ErrorContains(t, err, "nil limiter")
	_, err = NewAuthFailureGuard(l, AuthFailureConfig{Limit: Limit{Rate: 1, Burst: 0}})
	require.ErrorIs(t, err, ErrInvalidArgument)
	g := newTestGuard(t, l, AuthFailureConfig{})
	require.Equal(t, Limit{Rate: 1, Burst: 20}, g.cfg.Limit, "zero limit selects the default")
	require.Equal(t, AuthFailureConfig{Limit: Limit{Rate: 1, Burst: 20}, TrustForwardedFromLoopback: true}, DefaultAuthFailureConfig())
}

func TestAuthGuardBlocksAfterBurst(t *testing.T) {
	t.Parallel()
	l, reg, _ := newTestLimiter(t, redisClient(t), Config{})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 3}})
	intercept := g.UnaryServerInterceptor()
	h := &authHandler{}
	attacker := callFrom(t.Context(), "203.0.113.5")

	for range 3 {
		_, err := intercept(attacker, nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err), "the handler's own answer")
	}
	require.EqualValues(t, 3, h.calls.Load())

	_, err := intercept(attacker, nil, unaryInfo, h.unary(nil))
	retry := requireAuthRateLimited(t, err)
	require.InDelta(t, 100, retry.Seconds(), 1, "one failure refills in 100s")
	require.EqualValues(t, 3, h.calls.Load(), "refused without calling the handler")

	// Another address is not affected.
	resp, err := intercept(callFrom(t.Context(), "198.51.100.1"), nil, unaryInfo, h.unary(nil))
	require.NoError(t, err)
	require.Equal(t, "ok", resp)

	require.Equal(t, 1.0, metricValue(t, reg, "abacus_ratelimit_auth_refused_total"))
	require.Equal(t, 3.0, metricValue(t, reg, "abacus_ratelimit_decisions_total", "kind", "auth_failures", "result", "allowed"))
}

// TestAuthGuardSharedBetweenNodes checks that a second node, which has not
// seen the address run out, lets exactly one more failure through and then
// refuses it too.
func TestAuthGuardSharedBetweenNodes(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	cfg := AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 2}}
	l1, _, _ := newTestLimiter(t, rdb, Config{})
	l2, _, _ := newTestLimiter(t, rdb, Config{})
	node1 := newTestGuard(t, l1, cfg).UnaryServerInterceptor()
	node2 := newTestGuard(t, l2, cfg).UnaryServerInterceptor()
	h := &authHandler{}
	attacker := callFrom(t.Context(), "203.0.113.5")

	for range 2 {
		_, err := node1(attacker, nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err := node1(attacker, nil, unaryInfo, h.unary(errUnauthenticated))
	requireAuthRateLimited(t, err)

	_, err = node2(attacker, nil, unaryInfo, h.unary(errUnauthenticated))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "node 2 has not seen the address run out")
	_, err = node2(attacker, nil, unaryInfo, h.unary(errUnauthenticated))
	requireAuthRateLimited(t, err)
	require.EqualValues(t, 3, h.calls.Load())
}

func TestAuthGuardSuccessesAreFree(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	hook := &countingHook{}
	rdb.AddHook(hook)
	l, _, _ := newTestLimiter(t, rdb, Config{})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 3}})
	intercept := g.UnaryServerInterceptor()
	h := &authHandler{}
	client := callFrom(t.Context(), "203.0.113.5")

	for range 100 {
		_, err := intercept(client, nil, unaryInfo, h.unary(nil))
		require.NoError(t, err)
	}
	for range 10 {
		_, err := intercept(client, nil, unaryInfo, h.unary(errPermission))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "authenticated, only not allowed: free")
	}
	require.Zero(t, hook.count(), "no Redis call for calls that authenticated")
	for range 3 {
		_, err := intercept(client, nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err), "the whole burst is still there")
	}
	_, err := intercept(client, nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)
}

func TestAuthGuardForwardedFor(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	trusting := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 2}, TrustForwardedFromLoopback: true}).UnaryServerInterceptor()
	h := &authHandler{}

	// Through the gateway: loopback peer, client address appended last.
	viaGateway := callFrom(t.Context(), "127.0.0.1", "198.51.100.7, 203.0.113.5")
	for range 2 {
		_, err := trusting(viaGateway, nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err := trusting(viaGateway, nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)

	tests := []struct {
		name    string
		ctx     context.Context
		blocked bool
	}{
		{name: "same client, other proxies before", ctx: callFrom(t.Context(), "127.0.0.1", "10.0.0.9, 203.0.113.5"), blocked: true},
		{name: "same client, several values", ctx: callFrom(t.Context(), "::1", "192.0.2.77", "203.0.113.5"), blocked: true},
		{name: "same client connecting directly", ctx: callFrom(t.Context(), "203.0.113.5"), blocked: true},
		{name: "the spoofed first entry is not the client", ctx: callFrom(t.Context(), "127.0.0.1", "198.51.100.7"), blocked: false},
		{name: "other client through the gateway", ctx: callFrom(t.Context(), "127.0.0.1", "203.0.113.6"), blocked: false},
		{name: "loopback without x-forwarded-for", ctx: callFrom(t.Context(), "127.0.0.1"), blocked: false},
		{name: "x-forwarded-for from a remote peer is ignored", ctx: callFrom(t.Context(), "192.0.2.1", "203.0.113.5"), blocked: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := trusting(tt.ctx, nil, unaryInfo, h.unary(nil))
			if tt.blocked {
				requireAuthRateLimited(t, err)
			} else {
				require.NoError(t, err)
			}
		})
	}

	// Not trusting x-forwarded-for: the gateway's calls are all one client.
	distrusting := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 2}}).UnaryServerInterceptor()
	for range 2 {
		_, err := distrusting(callFrom(t.Context(), "127.0.0.2", "203.0.113.50"), nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err = distrusting(callFrom(t.Context(), "127.0.0.2", "203.0.113.51"), nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)
	_, err = distrusting(callFrom(t.Context(), "203.0.113.50"), nil, unaryInfo, h.unary(nil))
	require.NoError(t, err)
}

// TestAuthGuardWithoutRedis checks the guard on the local fallback, and that
// a block ends when a unit has refilled.
func TestAuthGuardWithoutRedis(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{Now: clock.Now})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 10, Burst: 2}})
	intercept := g.UnaryServerInterceptor()
	h := &authHandler{}
	client := callFrom(t.Context(), "2001:db8:1:2:3:4:5:6")

	for range 2 {
		_, err := intercept(client, nil, unaryInfo, h.unary(errUnauthenticated))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	_, err := intercept(client, nil, unaryInfo, h.unary(nil))
	require.Equal(t, 100*time.Millisecond, requireAuthRateLimited(t, err))
	// The same /64 is the same client.
	_, err = intercept(callFrom(t.Context(), "2001:db8:1:2:ffff::1"), nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)

	clock.Advance(99 * time.Millisecond)
	_, err = intercept(client, nil, unaryInfo, h.unary(nil))
	require.Equal(t, time.Millisecond, requireAuthRateLimited(t, err))

	clock.Advance(time.Millisecond)
	_, err = intercept(client, nil, unaryInfo, h.unary(errUnauthenticated))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "one more failure after a unit refilled")
	_, err = intercept(client, nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)
	require.EqualValues(t, 3, h.calls.Load())
}

func TestAuthGuardNeverRefusesHealthChecks(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l, _, _ := newTestLimiter(t, refusingClient(t), Config{Now: clock.Now})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 1}})
	intercept := g.UnaryServerInterceptor()
	h := &authHandler{}
	client := callFrom(t.Context(), "203.0.113.5")
	_, err := intercept(client, nil, unaryInfo, h.unary(errUnauthenticated))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = intercept(client, nil, unaryInfo, h.unary(nil))
	requireAuthRateLimited(t, err)

	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	_, err = intercept(client, nil, health, h.unary(nil))
	require.NoError(t, err)
}

type fakeServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeServerStream) Context() context.Context { return s.ctx }

func TestAuthGuardStream(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 2}})
	intercept := g.StreamServerInterceptor()
	info := &grpc.StreamServerInfo{FullMethod: "/abacus.ingest.v1.IngestService/IngestStream", IsClientStream: true, IsServerStream: true}
	var calls int
	handler := func(err error) grpc.StreamHandler {
		return func(any, grpc.ServerStream) error {
			calls++
			return err
		}
	}
	ss := &fakeServerStream{ctx: callFrom(t.Context(), "203.0.113.5")}

	require.NoError(t, intercept(nil, ss, info, handler(nil)))
	for range 2 {
		require.Equal(t, codes.Unauthenticated, status.Code(intercept(nil, ss, info, handler(errUnauthenticated))))
	}
	requireAuthRateLimited(t, intercept(nil, ss, info, handler(nil)))
	require.Equal(t, 3, calls)
}

// TestAuthGuardOverGRPC runs the guard in a real server in front of an auth
// check, so the refusal's details are seen as a client sees them.
func TestAuthGuardOverGRPC(t *testing.T) {
	t.Parallel()
	l, _, _ := newTestLimiter(t, redisClient(t), Config{})
	g := newTestGuard(t, l, AuthFailureConfig{Limit: Limit{Rate: 0.01, Burst: 2}})
	fakeAuth := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer good" {
			return errUnauthenticated
		}
		return handler(srv, ss)
	}
	var served atomic.Int64
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor(), fakeAuth),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			served.Add(1)
			var in emptypb.Empty
			if err := ss.RecvMsg(&in); err != nil {
				return err
			}
			return ss.SendMsg(&emptypb.Empty{})
		}),
	)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	call := func(token string) error {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
		return conn.Invoke(ctx, "/abacus.test.v1.Echo/Echo", &emptypb.Empty{}, &emptypb.Empty{})
	}
	require.NoError(t, call("good"))
	for range 2 {
		require.Equal(t, codes.Unauthenticated, status.Code(call("bad")))
	}
	retry := requireAuthRateLimited(t, call("good"))
	require.InDelta(t, 100, retry.Seconds(), 1)
	require.EqualValues(t, 1, served.Load())
}
