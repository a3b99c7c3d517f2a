package tenant_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/auth"
	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
	"github.com/abacus-analytics/abacus/internal/grpcserver"
	"github.com/abacus-analytics/abacus/internal/httpserver"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/services/tenant"
	"github.com/abacus-analytics/abacus/tenancy"
)

// The quota counter is what production reads usage from.
var _ tenant.Usage = (*ratelimit.Quota)(nil)

// now is the service's clock in every test: mid-February 2026.
var now = time.Date(2026, 2, 14, 9, 30, 0, 0, time.UTC)

const adminToken = "admin-token-0123456789abcdef"

// fakeLimits gives each tenant its own limits, and the defaults to others.
type fakeLimits map[tenancy.ID]tenancy.Limits

func (f fakeLimits) For(id tenancy.ID) tenancy.Limits {
	if l, ok := f[id]; ok {
		return l
	}
	return tenancy.DefaultLimits()
}

// fakeUsage counts per tenant and remembers what it was asked.
type fakeUsage struct {
	mu     sync.Mutex
	counts map[tenancy.ID]int64
	err    error
	asked  []usageCall
}

type usageCall struct {
	tenant tenancy.ID
	now    time.Time
}

func (f *fakeUsage) MonthlyEvents(ctx context.Context, id tenancy.ID, at time.Time) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, usageCall{tenant: id, now: at})
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if f.err != nil {
		return 0, f.err
	}
	return f.counts[id], nil
}

func (f *fakeUsage) set(id tenancy.ID, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[id] = n
}

func (f *fakeUsage) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeUsage) calls() []usageCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]usageCall(nil), f.asked...)
}

// keyStore is an in-memory auth.KeyStore.
type keyStore map[string]auth.KeyRecord

func (s keyStore) LookupAPIKey(_ context.Context, id string) (auth.KeyRecord, error) {
	rec, ok := s[id]
	if !ok {
		return auth.KeyRecord{}, fmt.Errorf("key %s: %w", id, auth.ErrKeyNotFound)
	}
	return rec, nil
}

// env serves the tenant service through the production interceptor chain
// (auth with the TenantService policies, error mapping, validation) over an
// in-process connection, and the REST gateway in front of it.
type env struct {
	client tenantv1.TenantServiceClient
	rest   http.Handler
	usage  *fakeUsage
	limits fakeLimits
	// Keys by name: "acme-ingest" (SCOPE_INGEST only), "globex-query"
	// (SCOPE_QUERY only), "umbrella" (tenant suspended).
	keys map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		usage: &fakeUsage{counts: map[tenancy.ID]int64{}},
		limits: fakeLimits{
			"acme":   withQuota(tenancy.DefaultLimits(), 1_000_000, 800_000),
			"globex": withQuota(tenancy.DefaultLimits(), 0, 0),
		},
		keys: map[string]string{},
	}
	store := keyStore{}
	for name, spec := range map[string]struct {
		tenant tenancy.ID
		scopes []auth.Scope
		active bool
	}{
		"acme-ingest":  {tenant: "acme", scopes: []auth.Scope{auth.ScopeIngest}, active: true},
		"globex-query": {tenant: "globex", scopes: []auth.Scope{auth.ScopeQuery}, active: true},
		"umbrella":     {tenant: "umbrella", scopes: []auth.Scope{auth.ScopeIngest, auth.ScopeQuery}},
	} {
		k, err := auth.GenerateKey()
		require.NoError(t, err)
		store[k.ID] = auth.KeyRecord{ID: k.ID, Tenant: spec.tenant, Hash: k.Hash, Scopes: spec.scopes, TenantActive: spec.active}
		e.keys[name] = k.Secret
	}

	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	authn, err := auth.New(auth.Config{AdminToken: adminToken}, store, logger, reg)
	require.NoError(t, err)
	policies := grpcserver.PublicMethods()
	for _, m := range tenantv1.TenantService_ServiceDesc.Methods {
		policies["/"+tenantv1.TenantService_ServiceDesc.ServiceName+"/"+m.MethodName] = auth.MethodPolicy{AnyTenantKey: true}
	}
	require.NoError(t, auth.ValidatePolicies(policies))
	gs, err := grpcserver.New(grpcserver.Config{MaxRecvMsgBytes: 1 << 20, Policies: policies}, authn, logger, reg)
	require.NoError(t, err)
	svc, err := tenant.New(e.limits, e.usage, logger, func() time.Time { return now })
	require.NoError(t, err)
	tenantv1.RegisterTenantServiceServer(gs.GRPC, svc)

	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.GRPC.Serve(lis) }()
	t.Cleanup(gs.GRPC.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	e.client = tenantv1.NewTenantServiceClient(conn)

	e.rest, err = httpserver.NewHandler(t.Context(), httpserver.Config{MaxBodyBytes: 1 << 20}, conn,
		[]httpserver.Registrar{tenantv1.RegisterTenantServiceHandler}, nil, reg, logger)
	require.NoError(t, err)
	return e
}

func withQuota(l tenancy.Limits, hard, soft int64) tenancy.Limits {
	l.MonthlyEventQuota, l.MonthlyEventQuotaSoft = hard, soft
	return l
}

// as returns a context whose calls carry the named key (or, for "admin",
// the admin token).
func (e *env) as(ctx context.Context, name string) context.Context {
	secret := adminToken
	if name != "admin" {
		secret = e.keys[name]
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

func requireStatus(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "status: %v", st)
	var reasons []string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reasons = append(reasons, info.GetReason())
		}
	}
	require.Equal(t, []string{reason}, reasons)
	return st
}

func TestNew(t *testing.T) {
	t.Parallel()

	_, err := tenant.New(nil, nil, nil, nil)
	require.ErrorContains(t, err, "tenant: limits are required")
	require.ErrorContains(t, err, "tenant: usage is required")

	svc, err := tenant.New(fakeLimits{}, &fakeUsage{}, nil, nil)
	require.NoError(t, err)
	require.NotNil(t, svc)
}

func TestGetLimits(t *testing.T) {
	t.Parallel()

	e := newEnv(t)
	acme := e.limits["acme"]
	globex := e.limits["globex"]

	tests := []struct {
		name   string
		caller string
		want   *tenantv1.GetLimitsResponse
	}{
		{
			name:   "ingest-only key",
			caller: "acme-ingest",
			want: &tenantv1.GetLimitsResponse{TenantId: "acme", Limits: &tenantv1.Limits{
				EventsPerSecond:        acme.EventsPerSecond,
				EventsBurst:            acme.EventsBurst,
				RequestsPerSecond:      acme.RequestsPerSecond,
				MaxBatchEvents:         int32(acme.MaxBatchEvents),
				MaxEventBytes:          int32(acme.MaxEventBytes),
				MaxProperties:          int32(acme.MaxProperties),
				TimestampPastWindow:    durationpb.New(acme.TimestampPastWindow),
				TimestampFutureWindow:  durationpb.New(acme.TimestampFutureWindow),
				MonthlyEventQuota:      1_000_000,
				MonthlyEventQuotaSoft:  800_000,
				QueryRequestsPerSecond: acme.QueryRequestsPerSecond,
				RawRetention:           durationpb.New(acme.RawRetention),
				RollupRetention:        durationpb.New(acme.RollupRetention),
			}},
		},
		{
			name:   "query-only key of another tenant",
			caller: "globex-query",
			want: &tenantv1.GetLimitsResponse{TenantId: "globex", Limits: &tenantv1.Limits{
				EventsPerSecond:        globex.EventsPerSecond,
				EventsBurst:            globex.EventsBurst,
				RequestsPerSecond:      globex.RequestsPerSecond,
				MaxBatchEvents:         int32(globex.MaxBatchEvents),
				MaxEventBytes:          int32(globex.MaxEventBytes),
				MaxProperties:          int32(globex.MaxProperties),
				TimestampPastWindow:    durationpb.New(globex.TimestampPastWindow),
				TimestampFutureWindow:  durationpb.New(globex.TimestampFutureWindow),
				QueryRequestsPerSecond: globex.QueryRequestsPerSecond,
				RawRetention:           durationpb.New(globex.RawRetention),
				RollupRetention:        durationpb.New(globex.RollupRetention),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := e.client.GetLimits(e.as(t.Context(), tt.caller), &tenantv1.GetLimitsRequest{})
			require.NoError(t, err)
			require.True(t, proto.Equal(tt.want, got), "got %v\nwant %v", got, tt.want)
		})
	}
}

func TestGetLimitsReflectsOverrides(t *testing.T) {
	t.Parallel()

	defaults := tenancy.DefaultLimits()
	quota := int64(5000)
	shards := 8
	raw, rollup := 400*24*time.Hour, 1000*24*time.Hour
	source := overridesSource{"acme": {MonthlyEventQuota: &quota, KafkaShards: &shards, RawRetention: &raw, RollupRetention: &rollup}}
	overrides, err := tenancy.NewOverrides(tenancy.OverridesConfig{Defaults: defaults}, source, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	require.NoError(t, overrides.Reload(t.Context()))
	svc, err := tenant.New(overrides, &fakeUsage{}, nil, nil)
	require.NoError(t, err)

	got, err := svc.GetLimits(tenancy.NewContext(t.Context(), "acme"), &tenantv1.GetLimitsRequest{})
	require.NoError(t, err)
	require.Equal(t, int64(5000), got.GetLimits().GetMonthlyEventQuota())
	require.Equal(t, defaults.EventsPerSecond, got.GetLimits().GetEventsPerSecond())
	require.Equal(t, raw, got.GetLimits().GetRawRetention().AsDuration())
	require.Equal(t, rollup, got.GetLimits().GetRollupRetention().AsDuration())

	got, err = svc.GetLimits(tenancy.NewContext(t.Context(), "globex"), &tenantv1.GetLimitsRequest{})
	require.NoError(t, err)
	require.Zero(t, got.GetLimits().GetMonthlyEventQuota(), "another tenant keeps the defaults")
	require.Equal(t, defaults.RawRetention, got.GetLimits().GetRawRetention().AsDuration())
	require.Equal(t, defaults.RollupRetention, got.GetLimits().GetRollupRetention().AsDuration())
}

type overridesSource map[tenancy.ID]tenancy.LimitOverrides

func (s overridesSource) LoadLimitOverrides(context.Context) (map[tenancy.ID]tenancy.LimitOverrides, error) {
	return s, nil
}

func TestGetUsage(t *testing.T) {
	t.Parallel()

	periodStart := timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	periodEnd := timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	tests := []struct {
		name      string
		hard      int64
		soft      int64
		accepted  int64
		remaining int64
		exceeded  bool
	}{
		{name: "unlimited", accepted: 123_456},
		{name: "unlimited, nothing yet"},
		{name: "limited", hard: 1000, accepted: 250, remaining: 750},
		{name: "limited, nothing yet", hard: 1000, remaining: 1000},
		{name: "one event left", hard: 1000, accepted: 999, remaining: 1},
		{name: "exhausted", hard: 1000, accepted: 1000},
		{name: "over the quota", hard: 1000, accepted: 1200},
		{name: "below the soft threshold", hard: 1000, soft: 800, accepted: 799, remaining: 201},
		{name: "at the soft threshold", hard: 1000, soft: 800, accepted: 800, remaining: 200, exceeded: true},
		{name: "soft threshold without a hard quota", soft: 800, accepted: 5000, exceeded: true},
		{name: "no soft threshold", hard: 1000, accepted: 900, remaining: 100},
		{name: "negative reading counts as none", hard: 1000, accepted: -5, remaining: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			usage := &fakeUsage{counts: map[tenancy.ID]int64{"acme": tt.accepted}}
			limits := fakeLimits{"acme": withQuota(tenancy.DefaultLimits(), tt.hard, tt.soft)}
			svc, err := tenant.New(limits, usage, nil, func() time.Time { return now })
			require.NoError(t, err)

			got, err := svc.GetUsage(tenancy.NewContext(t.Context(), "acme"), &tenantv1.GetUsageRequest{})
			require.NoError(t, err)
			want := &tenantv1.GetUsageResponse{
				TenantId:              "acme",
				PeriodStart:           periodStart,
				PeriodEnd:             periodEnd,
				EventsAccepted:        max(tt.accepted, 0),
				MonthlyEventQuota:     tt.hard,
				QuotaRemaining:        tt.remaining,
				MonthlyEventQuotaSoft: tt.soft,
				SoftThresholdExceeded: tt.exceeded,
			}
			require.True(t, proto.Equal(want, got), "got %v\nwant %v", got, want)
			require.Equal(t, []usageCall{{tenant: "acme", now: now}}, usage.calls())
		})
	}
}

func TestGetUsageTenantsSeeOnlyTheirOwn(t *testing.T) {
	t.Parallel()

	e := newEnv(t)
	e.usage.set("acme", 850_000)
	e.usage.set("globex", 42)

	acme, err := e.client.GetUsage(e.as(t.Context(), "acme-ingest"), &tenantv1.GetUsageRequest{})
	require.NoError(t, err)
	require.Equal(t, "acme", acme.GetTenantId())
	require.Equal(t, int64(850_000), acme.GetEventsAccepted())
	require.Equal(t, int64(1_000_000), acme.GetMonthlyEventQuota())
	require.Equal(t, int64(150_000), acme.GetQuotaRemaining())
	require.True(t, acme.GetSoftThresholdExceeded())

	globex, err := e.client.GetUsage(e.as(t.Context(), "globex-query"), &tenantv1.GetUsageRequest{})
	require.NoError(t, err)
	require.Equal(t, "globex", globex.GetTenantId())
	require.Equal(t, int64(42), globex.GetEventsAccepted())
	require.Zero(t, globex.GetMonthlyEventQuota())
	require.Zero(t, globex.GetQuotaRemaining())
	require.False(t, globex.GetSoftThresholdExceeded())

	require.Equal(t, []usageCall{{tenant: "acme", now: now}, {tenant: "globex", now: now}}, e.usage.calls())
}

func TestAuthorization(t *testing.T) {
	t.Parallel()

	e := newEnv(t)
	call := map[string]func(ctx context.Context) error{
		"GetLimits": func(ctx context.Context) error {
			_, err := e.client.GetLimits(ctx, &tenantv1.GetLimitsRequest{})
			return err
		},
		"GetUsage": func(ctx context.Context) error {
			_, err := e.client.GetUsage(ctx, &tenantv1.GetUsageRequest{})
			return err
		},
	}
	tests := []struct {
		name   string
		ctx    func(context.Context) context.Context
		code   codes.Code
		reason string
	}{
		{name: "ingest-only key", ctx: func(ctx context.Context) context.Context { return e.as(ctx, "acme-ingest") }, code: codes.OK},
		{name: "query-only key", ctx: func(ctx context.Context) context.Context { return e.as(ctx, "globex-query") }, code: codes.OK},
		{name: "admin token", ctx: func(ctx context.Context) context.Context { return e.as(ctx, "admin") }, code: codes.PermissionDenied, reason: auth.ReasonTenantKeyRequired},
		{name: "no credentials", ctx: func(ctx context.Context) context.Context { return ctx }, code: codes.Unauthenticated, reason: auth.ReasonMissingCredentials},
		{
			name: "unknown key",
			ctx: func(ctx context.Context) context.Context {
				k, err := auth.GenerateKey()
				require.NoError(t, err)
				return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+k.Secret)
			},
			code: codes.Unauthenticated, reason: auth.ReasonInvalidCredentials,
		},
		{name: "suspended tenant", ctx: func(ctx context.Context) context.Context { return e.as(ctx, "umbrella") }, code: codes.PermissionDenied, reason: auth.ReasonTenantSuspended},
	}
	for _, tt := range tests {
		for rpc, fn := range call {
			t.Run(tt.name+"/"+rpc, func(t *testing.T) {
				t.Parallel()
				err := fn(tt.ctx(t.Context()))
				if tt.code == codes.OK {
					require.NoError(t, err)
					return
				}
				requireStatus(t, err, tt.code, tt.reason)
			})
		}
	}
}

func TestGetUsageUnavailable(t *testing.T) {
	t.Parallel()

	e := newEnv(t)
	e.usage.fail(errors.New("dial tcp 10.0.0.7:6379: connection refused"))

	_, err := e.client.GetUsage(e.as(t.Context(), "acme-ingest"), &tenantv1.GetUsageRequest{})
	st := requireStatus(t, err, codes.Unavailable, tenant.ReasonUsageUnavailable)
	require.NotContains(t, st.Message(), "10.0.0.7", "the cause stays in the logs")
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry)
	require.Positive(t, retry.GetRetryDelay().AsDuration())

	// Through the gateway the same answer is a 503 with Retry-After.
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/usage", nil)
	req.Header.Set("Authorization", "Bearer "+e.keys["acme-ingest"])
	rec := httptest.NewRecorder()
	e.rest.ServeHTTP(rec, req)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), tenant.ReasonUsageUnavailable)

	// Limits do not depend on the usage counter.
	_, err = e.client.GetLimits(e.as(t.Context(), "acme-ingest"), &tenantv1.GetLimitsRequest{})
	require.NoError(t, err)

	// Once the counter is back, so is usage: UNAVAILABLE was not a verdict.
	e.usage.fail(nil)
	_, err = e.client.GetUsage(e.as(t.Context(), "acme-ingest"), &tenantv1.GetUsageRequest{})
	require.NoError(t, err)
}

func TestHandlerEdges(t *testing.T) {
	t.Parallel()

	usage := &fakeUsage{counts: map[tenancy.ID]int64{}}
	svc, err := tenant.New(fakeLimits{}, usage, nil, nil)
	require.NoError(t, err)

	t.Run("no tenant in the context", func(t *testing.T) {
		t.Parallel()
		_, err := svc.GetLimits(t.Context(), &tenantv1.GetLimitsRequest{})
		require.ErrorIs(t, err, tenancy.ErrNoTenant)
		_, err = svc.GetUsage(t.Context(), &tenantv1.GetUsageRequest{})
		require.ErrorIs(t, err, tenancy.ErrNoTenant)
	})

	t.Run("request cancelled while reading usage", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(tenancy.NewContext(t.Context(), "acme"))
		cancel()
		_, err := svc.GetUsage(ctx, &tenantv1.GetUsageRequest{})
		require.Equal(t, codes.Canceled, status.Code(err))
	})

	t.Run("period follows the clock", func(t *testing.T) {
		t.Parallel()
		got, err := svc.GetUsage(tenancy.NewContext(t.Context(), "acme"), &tenantv1.GetUsageRequest{})
		require.NoError(t, err)
		start, end := got.GetPeriodStart().AsTime(), got.GetPeriodEnd().AsTime()
		require.False(t, time.Now().Before(start))
		require.True(t, time.Now().Before(end))
		require.Equal(t, start.AddDate(0, 1, 0), end)
	})
}

func TestREST(t *testing.T) {
	t.Parallel()

	e := newEnv(t)
	e.usage.set("acme", 250_000)

	get := func(t *testing.T, path, name string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
		if name != "" {
			req.Header.Set("Authorization", "Bearer "+e.keys[name])
		}
		rec := httptest.NewRecorder()
		e.rest.ServeHTTP(rec, req)
		return rec
	}

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		rec := get(t, "/v1/usage", "acme-ingest")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Equal(t, "acme", body["tenant_id"])
		require.Equal(t, "2026-02-01T00:00:00Z", body["period_start"])
		require.Equal(t, "2026-03-01T00:00:00Z", body["period_end"])
		require.Equal(t, "250000", body["events_accepted"])
		require.Equal(t, "750000", body["quota_remaining"])
		require.Equal(t, false, body["soft_threshold_exceeded"])
	})

	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		rec := get(t, "/v1/limits", "globex-query")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var body struct {
			TenantID string         `json:"tenant_id"`
			Limits   map[string]any `json:"limits"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Equal(t, "globex", body.TenantID)
		require.Contains(t, body.Limits, "max_batch_events")
		require.Equal(t, "604800s", body.Limits["timestamp_past_window"])
		require.Equal(t, "7776000s", body.Limits["raw_retention"], "90 days")
		require.Equal(t, "63115200s", body.Limits["rollup_retention"], "two years of 365.25 days")
	})

	t.Run("tenant in the query string is ignored", func(t *testing.T) {
		t.Parallel()
		rec := get(t, "/v1/usage?tenant_id=globex", "acme-ingest")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Equal(t, "acme", body["tenant_id"])
		require.Equal(t, "250000", body["events_accepted"])
	})

	t.Run("suspended tenant", func(t *testing.T) {
		t.Parallel()
		rec := get(t, "/v1/limits", "umbrella")
		require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), "TENANT_SUSPENDED")
	})

	t.Run("no credentials", func(t *testing.T) {
		t.Parallel()
		rec := get(t, "/v1/usage", "")
		require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
	})
}
