package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/abacus-analytics/abacus/tenancy"
)

// The test service stands in for the generated ones: every method answers
// with who the handler thinks is calling.
const (
	testService     = "abacus.test.v1.TestService"
	methodIngest    = "/" + testService + "/Ingest"
	methodQuery     = "/" + testService + "/Query"
	methodAdmin     = "/" + testService + "/Admin"
	methodUnlisted  = "/" + testService + "/Unlisted"
	methodBroken    = "/" + testService + "/Broken"
	methodWatch     = "/" + testService + "/Watch"
	methodSelf      = "/" + testService + "/Self"
	methodHealth    = "/grpc.health.v1.Health/Check"
	methodHealthWat = "/grpc.health.v1.Health/Watch"
)

var testPolicies = map[string]MethodPolicy{
	methodIngest: {Scope: ScopeIngest},
	methodQuery:  {Scope: ScopeQuery},
	methodAdmin:  {Admin: true},
	methodWatch:  {Scope: ScopeQuery},
	methodSelf:   {AnyTenantKey: true},
	methodBroken: {}, // invalid: a tenant method without a scope is denied
	methodHealth: {Public: true},
}

// whoami describes the caller as the handler sees it.
func whoami(ctx context.Context) string {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		tenant = "none"
	}
	p, _ := PrincipalFrom(ctx)
	return fmt.Sprintf("tenant=%s admin=%t key=%s scopes=%s", tenant, p.Admin, p.KeyID, p.Scopes)
}

func unaryMethod(name string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, _ any) (any, error) { return wrapperspb.String(whoami(ctx)), nil }
			if interceptor == nil {
				return handler(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + testService + "/" + name}, handler)
		},
	}
}

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: testService,
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{unaryMethod("Ingest"), unaryMethod("Query"), unaryMethod("Admin"), unaryMethod("Unlisted"), unaryMethod("Broken"), unaryMethod("Self")},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			return stream.SendMsg(wrapperspb.String(whoami(stream.Context())))
		},
	}},
}

type grpcEnv struct {
	*testEnv
	conn *grpc.ClientConn
}

// newGRPCEnv serves the test and health services in-process through the
// authenticator's interceptors.
func newGRPCEnv(t *testing.T) *grpcEnv {
	t.Helper()
	env := newTestEnv(t, Config{})
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(env.auth.UnaryServerInterceptor(testPolicies)),
		grpc.ChainStreamInterceptor(env.auth.StreamServerInterceptor(testPolicies)),
	)
	srv.RegisterService(&testServiceDesc, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &grpcEnv{testEnv: env, conn: conn}
}

func (e *grpcEnv) call(ctx context.Context, method string) (string, error) {
	if method == methodHealth {
		_, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return "", err
	}
	if method == methodWatch || method == methodHealthWat {
		desc := &grpc.StreamDesc{ServerStreams: true}
		stream, err := e.conn.NewStream(ctx, desc, method)
		if err != nil {
			return "", err
		}
		if err := stream.SendMsg(&emptypb.Empty{}); err != nil {
			return "", err
		}
		if err := stream.CloseSend(); err != nil {
			return "", err
		}
		if method == methodHealthWat {
			out := new(healthpb.HealthCheckResponse)
			return "", stream.RecvMsg(out)
		}
		out := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(out); err != nil {
			return "", err
		}
		return out.GetValue(), nil
	}
	out := new(wrapperspb.StringValue)
	if err := e.conn.Invoke(ctx, method, &emptypb.Empty{}, out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func TestInterceptors(t *testing.T) {
	t.Parallel()

	env := newGRPCEnv(t)
	ingestKey, rec := newKey(t, "acme", ScopeIngest)
	queryKey, queryRec := newKey(t, "globex", ScopeQuery)
	revokedKey, revokedRec := newKey(t, "acme", ScopeIngest, ScopeQuery)
	revokedRec.RevokedAt = time.Unix(1, 0)
	unknownKey, _ := newKey(t, "acme", ScopeIngest)
	bothKey, bothRec := newKey(t, "initech", ScopeIngest, ScopeQuery)
	noScopeKey, noScopeRec := newKey(t, "acme", Scope(42)) // a scope this binary does not know grants nothing
	suspendedKey, suspendedRec := newKey(t, "umbrella", ScopeIngest, ScopeQuery)
	suspendedRec.TenantActive = false
	suspendedRevokedKey, suspendedRevokedRec := newKey(t, "umbrella", ScopeIngest)
	suspendedRevokedRec.TenantActive = false
	suspendedRevokedRec.RevokedAt = time.Unix(1, 0)
	env.store.update(func(s *fakeStore) {
		for _, r := range []KeyRecord{rec, queryRec, revokedRec, bothRec, noScopeRec, suspendedRec, suspendedRevokedRec} {
			s.records[r.ID] = r
		}
	})
	bearer := func(secret string) []string { return []string{"authorization", "Bearer " + secret} }

	type want struct {
		code   codes.Code
		msg    string // exact status message, or the handler's answer on OK
		reason string
		md     map[string]string
	}
	missing := want{code: codes.Unauthenticated, msg: "missing credentials: send authorization: Bearer <api key>", reason: ReasonMissingCredentials}
	invalid := want{code: codes.Unauthenticated, msg: "invalid credentials", reason: ReasonInvalidCredentials}
	notPermitted := want{code: codes.PermissionDenied, msg: "method is not permitted", reason: ReasonMethodNotAllowed}
	adminRequired := want{code: codes.PermissionDenied, msg: "this method requires the admin token; API keys cannot call it", reason: ReasonAdminRequired}
	ingestOK := want{code: codes.OK, msg: "tenant=acme admin=false key=" + ingestKey.ID + " scopes=SCOPE_INGEST"}
	queryOK := want{code: codes.OK, msg: "tenant=globex admin=false key=" + queryKey.ID + " scopes=SCOPE_QUERY"}
	tenantKeyRequired := want{code: codes.PermissionDenied, msg: "the admin token is not a tenant credential; call this method with a tenant API key", reason: ReasonTenantKeyRequired}
	suspended := want{
		code:   codes.PermissionDenied,
		msg:    "tenant umbrella is suspended; contact the operator of this service to reactivate it",
		reason: ReasonTenantSuspended,
		md:     map[string]string{"tenant_id": "umbrella"},
	}

	tests := []struct {
		name   string
		method string
		md     []string // outgoing metadata pairs
		want   want
	}{
		{name: "no metadata", method: methodIngest, want: missing},
		{name: "empty authorization", method: methodIngest, md: []string{"authorization", ""}, want: missing},
		{name: "bare Bearer", method: methodIngest, md: []string{"authorization", "Bearer"}, want: missing},
		{name: "malformed header", method: methodIngest, md: []string{"authorization", "Bearer " + ingestKey.Secret + " extra"}, want: invalid},
		{name: "scheme glued to the key", method: methodIngest, md: []string{"authorization", "Bearer" + ingestKey.Secret}, want: invalid},
		{name: "key without scheme", method: methodIngest, md: []string{"authorization", ingestKey.Secret}, want: invalid},
		{name: "wrong scheme", method: methodIngest, md: []string{"authorization", "Basic " + ingestKey.Secret}, want: invalid},
		{name: "two authorization values", method: methodIngest, md: append(bearer(ingestKey.Secret), bearer(ingestKey.Secret)...), want: invalid},
		{name: "malformed key", method: methodIngest, md: bearer("abk_nope"), want: invalid},
		{name: "wrong secret", method: methodIngest, md: bearer(withOtherSecret(t, ingestKey)), want: invalid},
		{name: "unknown key", method: methodIngest, md: bearer(unknownKey.Secret), want: invalid},
		{name: "revoked key", method: methodIngest, md: bearer(revokedKey.Secret), want: invalid},
		{name: "valid key", method: methodIngest, md: bearer(ingestKey.Secret), want: ingestOK},
		{name: "lowercase scheme", method: methodIngest, md: []string{"authorization", "bearer " + ingestKey.Secret}, want: ingestOK},
		{name: "extra spaces", method: methodIngest, md: []string{"authorization", "  BEARER   " + ingestKey.Secret + " "}, want: ingestOK},
		{name: "other tenant, other scope", method: methodQuery, md: bearer(queryKey.Secret), want: queryOK},
		{name: "suspended tenant", method: methodIngest, md: bearer(suspendedKey.Secret), want: suspended},
		{name: "suspended tenant on a method outside the key's scopes", method: methodAdmin, md: bearer(suspendedKey.Secret), want: suspended},
		{name: "suspended tenant, wrong secret", method: methodIngest, md: bearer(withOtherSecret(t, suspendedKey)), want: invalid},
		{name: "suspended tenant, revoked key", method: methodIngest, md: bearer(suspendedRevokedKey.Secret), want: invalid},
		{name: "suspended tenant on a stream", method: methodWatch, md: bearer(suspendedKey.Secret), want: suspended},
		{name: "any tenant key: ingest-only key", method: methodSelf, md: bearer(ingestKey.Secret), want: ingestOK},
		{name: "any tenant key: query-only key", method: methodSelf, md: bearer(queryKey.Secret), want: queryOK},
		{name: "any tenant key: key with both scopes", method: methodSelf, md: bearer(bothKey.Secret), want: want{code: codes.OK, msg: "tenant=initech admin=false key=" + bothKey.ID + " scopes=SCOPE_INGEST,SCOPE_QUERY"}},
		{
			name: "any tenant key: key without scopes", method: methodSelf, md: bearer(noScopeKey.Secret),
			want: want{code: codes.PermissionDenied, msg: "API key has no scopes; this method accepts a key with any scope", reason: ReasonMissingScope},
		},
		{name: "any tenant key: admin token", method: methodSelf, md: bearer(testAdminToken), want: tenantKeyRequired},
		{name: "any tenant key: no credentials", method: methodSelf, want: missing},
		{name: "any tenant key: unknown key", method: methodSelf, md: bearer(unknownKey.Secret), want: invalid},
		{name: "any tenant key: revoked key", method: methodSelf, md: bearer(revokedKey.Secret), want: invalid},
		{name: "any tenant key: suspended tenant", method: methodSelf, md: bearer(suspendedKey.Secret), want: suspended},
		{
			name: "wrong scope", method: methodQuery, md: bearer(ingestKey.Secret),
			want: want{code: codes.PermissionDenied, msg: "API key lacks scope SCOPE_QUERY, which this method requires", reason: ReasonMissingScope, md: map[string]string{"required_scope": "SCOPE_QUERY"}},
		},
		{name: "admin token on admin method", method: methodAdmin, md: bearer(testAdminToken), want: want{code: codes.OK, msg: "tenant=none admin=true key= scopes="}},
		{name: "key on admin method", method: methodAdmin, md: bearer(ingestKey.Secret), want: adminRequired},
		{name: "wrong admin token", method: methodAdmin, md: bearer(testAdminToken + "x"), want: invalid},
		{name: "no credentials on admin method", method: methodAdmin, want: missing},
		{name: "admin token on tenant method", method: methodIngest, md: bearer(testAdminToken), want: tenantKeyRequired},
		{name: "unlisted method with a valid key", method: methodUnlisted, md: bearer(ingestKey.Secret), want: notPermitted},
		{name: "unlisted method with the admin token", method: methodUnlisted, md: bearer(testAdminToken), want: notPermitted},
		{name: "unlisted method without credentials", method: methodUnlisted, want: notPermitted},
		{name: "invalid policy is denied", method: methodBroken, md: bearer(ingestKey.Secret), want: notPermitted},
		{name: "public method without credentials", method: methodHealth, want: want{code: codes.OK}},
		{name: "public method ignores bad credentials", method: methodHealth, md: []string{"authorization", "Basic nope"}, want: want{code: codes.OK}},
		{name: "unlisted public-looking stream", method: methodHealthWat, want: notPermitted},
		{name: "stream with valid key", method: methodWatch, md: bearer(queryKey.Secret), want: queryOK},
		{name: "stream without credentials", method: methodWatch, want: missing},
		{name: "stream with bad key", method: methodWatch, md: bearer(unknownKey.Secret), want: invalid},
		{
			name: "stream with wrong scope", method: methodWatch, md: bearer(ingestKey.Secret),
			want: want{code: codes.PermissionDenied, msg: "API key lacks scope SCOPE_QUERY, which this method requires", reason: ReasonMissingScope, md: map[string]string{"required_scope": "SCOPE_QUERY"}},
		},
		{name: "stream with the admin token", method: methodWatch, md: bearer(testAdminToken), want: tenantKeyRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(tt.md...))
			}
			got, err := env.call(ctx, tt.method)
			st := status.Convert(err)
			require.Equal(t, tt.want.code, st.Code(), "status: %v", st)
			if tt.want.code == codes.OK {
				require.Equal(t, tt.want.msg, got)
				return
			}
			require.Equal(t, tt.want.msg, st.Message())
			requireErrorInfo(t, st, tt.want.reason, tt.want.md)
		})
	}
}

func requireErrorInfo(t *testing.T, st *status.Status, reason string, md map[string]string) {
	t.Helper()
	var infos []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			infos = append(infos, info)
		}
	}
	require.Len(t, infos, 1)
	require.Equal(t, reason, infos[0].GetReason())
	require.Equal(t, ErrorDomain, infos[0].GetDomain())
	if md == nil {
		require.Empty(t, infos[0].GetMetadata())
		return
	}
	require.Equal(t, md, infos[0].GetMetadata())
}

func TestInterceptorStoreUnavailable(t *testing.T) {
	t.Parallel()

	env := newGRPCEnv(t)
	k, rec := newKey(t, "acme", ScopeIngest)
	env.store.update(func(s *fakeStore) {
		s.records[rec.ID] = rec
		s.err = errors.New("dial tcp 10.0.0.7:5432: connection refused")
	})

	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+k.Secret)
	_, err := env.call(ctx, methodIngest)
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code())
	require.NotContains(t, st.Message(), "10.0.0.7", "store internals stay in the logs")
	requireErrorInfo(t, st, ReasonAuthUnavailable, nil)

	// Once the store is back, the same key works: UNAVAILABLE was no verdict.
	env.store.update(func(s *fakeStore) { s.err = nil })
	got, err := env.call(ctx, methodIngest)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(got, "tenant=acme "), got)
}

func TestValidatePolicies(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		policies map[string]MethodPolicy
		wantErr  []string
	}{
		{name: "valid", policies: map[string]MethodPolicy{
			methodIngest: {Scope: ScopeIngest}, methodAdmin: {Admin: true}, methodHealth: {Public: true}, methodSelf: {AnyTenantKey: true},
		}},
		{name: "empty", policies: nil},
		{name: "tenant method without scope", policies: map[string]MethodPolicy{methodIngest: {}}, wantErr: []string{methodIngest + ": tenant method needs a valid scope, has SCOPE_UNSPECIFIED"}},
		{name: "unknown scope", policies: map[string]MethodPolicy{methodIngest: {Scope: 9}}, wantErr: []string{"has Scope(9)"}},
		{name: "public and admin", policies: map[string]MethodPolicy{methodAdmin: {Public: true, Admin: true}}, wantErr: []string{"more than one of Public, Admin and AnyTenantKey set"}},
		{name: "admin and any tenant key", policies: map[string]MethodPolicy{methodSelf: {Admin: true, AnyTenantKey: true}}, wantErr: []string{"more than one of Public, Admin and AnyTenantKey set"}},
		{name: "public and any tenant key", policies: map[string]MethodPolicy{methodSelf: {Public: true, AnyTenantKey: true}}, wantErr: []string{"more than one of Public, Admin and AnyTenantKey set"}},
		{name: "admin with scope", policies: map[string]MethodPolicy{methodAdmin: {Admin: true, Scope: ScopeQuery}}, wantErr: []string{"scope SCOPE_QUERY set on a public, admin or any-tenant-key method"}},
		{name: "public with scope", policies: map[string]MethodPolicy{methodHealth: {Public: true, Scope: ScopeQuery}}, wantErr: []string{"set on a public, admin or any-tenant-key method"}},
		{name: "any tenant key with scope", policies: map[string]MethodPolicy{methodSelf: {AnyTenantKey: true, Scope: ScopeIngest}}, wantErr: []string{"scope SCOPE_INGEST set on a public, admin or any-tenant-key method"}},
		{
			name: "malformed method names",
			policies: map[string]MethodPolicy{
				"abacus.ingest.v1.IngestService/Ingest": {Scope: ScopeIngest},
				"/abacus.ingest.v1.IngestService":       {Scope: ScopeIngest},
				"/a/b/c":                                {Scope: ScopeIngest},
			},
			wantErr: []string{`"abacus.ingest.v1.IngestService/Ingest": not a full method name`, `"/abacus.ingest.v1.IngestService": not a full`, `"/a/b/c": not a full`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidatePolicies(tt.policies)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestParseBearer(t *testing.T) {
	t.Parallel()

	tests := []struct {
		in     string
		token  string
		wantOK bool
	}{
		{in: "Bearer abc", token: "abc", wantOK: true},
		{in: "bearer abc", token: "abc", wantOK: true},
		{in: "BeArEr abc", token: "abc", wantOK: true},
		{in: " \tBearer   abc \t", token: "abc", wantOK: true},
		{in: "", wantOK: true},
		{in: "Bearer", wantOK: true},
		{in: "Bearer   ", wantOK: true},
		{in: "Bearer abc def"},
		{in: "Bearer\tabc"},
		{in: "Bearerabc"},
		{in: "Basic abc"},
		{in: "abc"},
		{in: "Bearer ab\x00c"},
		{in: "Bearer abç"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			token, ok := parseBearer(tt.in)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.token, token)
		})
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abk_x", "", "Bearer", "Basic x", "Bearer a b", "Bearer \x7f", "\tBEARER x\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		token, ok := parseBearer(v)
		if !ok {
			require.Empty(t, token)
			return
		}
		if token == "" {
			trimmed := strings.Trim(v, " \t")
			require.True(t, trimmed == "" || strings.EqualFold(strings.TrimRight(trimmed, " "), "bearer"), "%q", v)
			return
		}
		require.Contains(t, v, token)
		for i := range len(token) {
			require.True(t, token[i] > 0x20 && token[i] < 0x7f, "token byte %#x", token[i])
		}
		again, ok := parseBearer("Bearer " + token)
		require.True(t, ok)
		require.Equal(t, token, again)
	})
}
