package loadgen_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
)

const adminToken = "admin-token-0123456789"

// fakeAdmin keeps tenants and keys in memory and checks the admin token.
type fakeAdmin struct {
	adminv1.UnimplementedAdminServiceServer
	updateErr codes.Code // what UpdateTenant answers; OK applies the update

	mu      sync.Mutex
	tenants map[string]*adminv1.Tenant
	keys    map[string][]adminv1.Scope
	masks   [][]string
}

func (f *fakeAdmin) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if !slices.Equal(md.Get("authorization"), []string{"Bearer " + adminToken}) {
		return status.Error(codes.Unauthenticated, "admin token required")
	}
	return nil
}

func (f *fakeAdmin) CreateTenant(ctx context.Context, req *adminv1.CreateTenantRequest) (*adminv1.CreateTenantResponse, error) {
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tenants[req.GetTenantId()]; ok {
		return nil, status.Error(codes.AlreadyExists, "tenant exists")
	}
	t := &adminv1.Tenant{TenantId: req.GetTenantId(), DisplayName: req.GetDisplayName()}
	f.tenants[req.GetTenantId()] = t
	return &adminv1.CreateTenantResponse{Tenant: t}, nil
}

func (f *fakeAdmin) CreateApiKey(ctx context.Context, req *adminv1.CreateApiKeyRequest) (*adminv1.CreateApiKeyResponse, error) {
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	secret := "abk_" + req.GetTenantId()
	f.keys[secret] = req.GetScopes()
	return &adminv1.CreateApiKeyResponse{ApiKey: &adminv1.ApiKey{TenantId: req.GetTenantId()}, Secret: secret}, nil
}

func (f *fakeAdmin) UpdateTenant(ctx context.Context, req *adminv1.UpdateTenantRequest) (*adminv1.UpdateTenantResponse, error) {
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	if f.updateErr != codes.OK {
		return nil, status.Error(f.updateErr, "limits are not supported")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tenants[req.GetTenant().GetTenantId()]
	t.Limits = req.GetTenant().GetLimits()
	f.masks = append(f.masks, req.GetUpdateMask().GetPaths())
	return &adminv1.UpdateTenantResponse{Tenant: t}, nil
}

func adminConn(t *testing.T, f *fakeAdmin) *grpc.ClientConn {
	t.Helper()
	f.tenants = map[string]*adminv1.Tenant{}
	f.keys = map[string][]adminv1.Scope{}
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, f)
	addr := serve(t, srv)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestProvision(t *testing.T) {
	t.Parallel()
	f := &fakeAdmin{}
	conn := adminConn(t, f)
	var logs bytes.Buffer
	keys, err := loadgen.Provision(t.Context(), conn, adminToken,
		loadgen.ProvisionConfig{RunID: "r1", Tenants: 12, TenantRate: 2_000_000},
		slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.Len(t, keys, 12)
	for i, k := range keys {
		name := fmt.Sprintf("loadgen-r1-%02d", i+1)
		require.Equal(t, name, k.Tenant, "keys come back in tenant order")
		require.Equal(t, "abk_"+name, k.Secret)
		require.Equal(t, []adminv1.Scope{adminv1.Scope_SCOPE_INGEST}, f.keys[k.Secret])
		lim := f.tenants[name].GetLimits()
		require.InDelta(t, 2_000_000, lim.GetEventsPerSecond(), 0)
		require.Equal(t, int64(4_000_000), lim.GetEventsBurst())
		require.InDelta(t, 1_000_000, lim.GetRequestsPerSecond(), 0, "capped at the contract's maximum")
	}
	require.Len(t, f.masks, 12)
	require.Equal(t, []string{"limits.events_per_second", "limits.events_burst", "limits.requests_per_second"}, f.masks[0])
	require.NotContains(t, logs.String(), adminToken)
	require.NotContains(t, logs.String(), "abk_")
}

func TestProvision_LimitsNotSupported(t *testing.T) {
	t.Parallel()
	for _, code := range []codes.Code{codes.Unimplemented, codes.InvalidArgument} {
		f := &fakeAdmin{updateErr: code}
		conn := adminConn(t, f)
		var logs bytes.Buffer
		keys, err := loadgen.Provision(t.Context(), conn, adminToken,
			loadgen.ProvisionConfig{RunID: "r2", Tenants: 3, TenantRate: 1000},
			slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, err, "a server without the limit fields still gets its tenants")
		require.Len(t, keys, 3)
		require.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), "warned once: %s", logs.String())
		require.Contains(t, logs.String(), code.String())
	}
}

func TestProvision_Errors(t *testing.T) {
	t.Parallel()
	f := &fakeAdmin{updateErr: codes.Internal}
	conn := adminConn(t, f)
	_, err := loadgen.Provision(t.Context(), conn, adminToken, loadgen.ProvisionConfig{RunID: "r3", Tenants: 1, TenantRate: 1000}, nil)
	require.ErrorContains(t, err, "set limits of loadgen-r3-01")

	_, err = loadgen.Provision(t.Context(), conn, "wrong-token-000000", loadgen.ProvisionConfig{RunID: "r4", Tenants: 1}, nil)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.NotContains(t, err.Error(), "wrong-token")

	_, err = loadgen.Provision(t.Context(), conn, adminToken, loadgen.ProvisionConfig{RunID: "R!", Tenants: 0, TenantRate: -1}, nil)
	require.ErrorContains(t, err, "run id")
	require.ErrorContains(t, err, "tenants is 0")
	require.ErrorContains(t, err, "tenant rate is -1")
}

// fakeTenants answers GetLimits with the default rate for the first calls, as
// a node that has not yet reloaded the overrides would.
type fakeTenants struct {
	tenantv1.UnimplementedTenantServiceServer
	admin *fakeAdmin
	stale atomic.Int32
	calls atomic.Int32
}

func (f *fakeTenants) GetLimits(ctx context.Context, _ *tenantv1.GetLimitsRequest) (*tenantv1.GetLimitsResponse, error) {
	f.calls.Add(1)
	if f.stale.Add(-1) >= 0 {
		return &tenantv1.GetLimitsResponse{Limits: &tenantv1.Limits{EventsPerSecond: 10000}}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	secret := strings.TrimPrefix(strings.Join(md.Get("authorization"), ""), "Bearer ")
	f.admin.mu.Lock()
	defer f.admin.mu.Unlock()
	lim := f.admin.tenants[strings.TrimPrefix(secret, "abk_")].GetLimits()
	return &tenantv1.GetLimitsResponse{Limits: &tenantv1.Limits{EventsPerSecond: lim.GetEventsPerSecond()}}, nil
}

func TestProvision_WaitsUntilTheLimitsApply(t *testing.T) {
	t.Parallel()
	f := &fakeAdmin{tenants: map[string]*adminv1.Tenant{}, keys: map[string][]adminv1.Scope{}}
	ft := &fakeTenants{admin: f}
	ft.stale.Store(3)
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, f)
	tenantv1.RegisterTenantServiceServer(srv, ft)
	conn, err := grpc.NewClient(serve(t, srv), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	_, err = loadgen.Provision(t.Context(), conn, adminToken, loadgen.ProvisionConfig{RunID: "r4", Tenants: 2, TenantRate: 5000}, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, int(ft.calls.Load()), 2+3, "asked again until the new limit showed")
}
