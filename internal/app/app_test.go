package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/internal/app"
	"github.com/abacus-analytics/abacus/internal/config"
	"github.com/abacus-analytics/abacus/internal/devstack"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

const adminToken = "test-admin-token-0123456789"

// system is one abacusd process with every role, on private dependencies, plus clients.
type system struct {
	app   *app.App
	conn  *grpc.ClientConn
	admin adminv1.AdminServiceClient
	base  string // http://host:port
}

// withKafka runs the system against the given broker instead of a fresh in-memory one.
func withKafka(k *devstack.Kafka) func(*config.Config) {
	return func(c *config.Config) { c.KafkaBrokers = k.Brokers() }
}

func startSystem(t *testing.T, mutate ...func(*config.Config)) *system {
	t.Helper()
	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DatabaseURL = devstacktest.Postgres(t)
	cfg.RedisURL = devstacktest.Redis(t)
	cfg.KafkaBrokers = nil
	cfg.KafkaPartitions = 3
	cfg.AdminToken = adminToken
	cfg.AuthCacheTTL = 500 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	for _, m := range mutate {
		m(&cfg)
	}
	if cfg.KafkaBrokers == nil {
		cfg.KafkaBrokers = devstacktest.Kafka(t).Brokers()
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(cfg, logger, prometheus.NewRegistry())
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case err := <-done:
		t.Fatalf("abacusd stopped during start: %v", err)
	case <-a.Ready():
	case <-time.After(time.Minute):
		t.Fatal("abacusd did not become ready within a minute")
	}
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &system{app: a, conn: conn, admin: adminv1.NewAdminServiceClient(conn), base: "http://" + a.HTTPAddr()}
}

func bearer(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

// tenantWithKey creates a tenant and a key with the given scopes, returning the key's secret.
func (s *system) tenantWithKey(t *testing.T, tenant string, scopes ...adminv1.Scope) string {
	t.Helper()
	ctx := bearer(t.Context(), adminToken)
	_, err := s.admin.CreateTenant(ctx, &adminv1.CreateTenantRequest{TenantId: tenant, DisplayName: tenant})
	if status.Code(err) != codes.AlreadyExists {
		require.NoError(t, err)
	}
	return s.key(t, tenant, scopes...)
}

func (s *system) key(t *testing.T, tenant string, scopes ...adminv1.Scope) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []adminv1.Scope{adminv1.Scope_SCOPE_INGEST, adminv1.Scope_SCOPE_QUERY}
	}
	resp, err := s.admin.CreateApiKey(bearer(t.Context(), adminToken), &adminv1.CreateApiKeyRequest{TenantId: tenant, Scopes: scopes})
	require.NoError(t, err)
	return resp.GetSecret()
}

// do sends an HTTP request and returns the status code, headers and body.
func (s *system) do(t *testing.T, method, path, secret string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func event(id, typ string, ts time.Time) *ingestv1.Event {
	return &ingestv1.Event{EventId: id, Type: typ, UserId: "u-" + id, Timestamp: timestamppb.New(ts)}
}

func eventsJSON(ts time.Time, typ string, ids ...string) string {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"event_id":%q,"type":%q,"user_id":"u","timestamp":%q}`, id, typ, ts.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString(`]}`)
	return b.String()
}

// total polls GetTimeSeries until the minute buckets of [start, start+10m) sum to want.
func (s *system) waitTotal(t *testing.T, secret, typ string, start time.Time, want float64) {
	t.Helper()
	client := queryv1.NewQueryServiceClient(s.conn)
	var got float64
	require.Eventually(t, func() bool {
		resp, err := client.GetTimeSeries(bearer(t.Context(), secret), &queryv1.GetTimeSeriesRequest{
			EventType:   typ,
			Metric:      queryv1.Metric_METRIC_COUNT,
			Granularity: queryv1.Granularity_GRANULARITY_MINUTE,
			Start:       timestamppb.New(start.Add(-5 * time.Minute)),
			End:         timestamppb.New(start.Add(10 * time.Minute)),
		})
		if err != nil {
			return false
		}
		got = 0
		for _, p := range resp.GetSeries()[0].GetPoints() {
			got += p.GetValue()
		}
		return got == want
	}, 30*time.Second, 50*time.Millisecond, "time series total for %s: want %v", typ, want)
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()

	// Tenant over REST, key over gRPC: both admin transports.
	code, _, body := s.do(t, http.MethodPost, "/v1/admin/tenants", adminToken, `{"tenant_id":"acme","display_name":"Acme"}`)
	require.Equal(t, http.StatusOK, code, string(body))
	var created struct {
		Tenant struct {
			TenantID string `json:"tenant_id"`
			State    string `json:"state"`
		} `json:"tenant"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	require.Equal(t, "acme", created.Tenant.TenantID)
	require.Equal(t, "TENANT_STATE_ACTIVE", created.Tenant.State)
	secret := s.key(t, "acme")

	// Three events over gRPC.
	ingest := ingestv1.NewIngestServiceClient(s.conn)
	resp, err := ingest.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: []*ingestv1.Event{
		event("g-1", "page_view", now), event("g-2", "page_view", now), event("g-3", "page_view", now),
	}})
	require.NoError(t, err)
	require.EqualValues(t, 3, resp.GetAccepted())
	require.Empty(t, resp.GetRejected())

	// Two new events over REST, plus a client retry of g-1 that must not count twice.
	code, _, body = s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "page_view", "r-1", "r-2", "g-1"))
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"accepted":3,"rejected":[]}`, string(body))
	acked := time.Now()

	// The series over REST. Once its watermark passes the last
	// acknowledgement, the answer counts every event: the watermark is the
	// promise that it does.
	q := fmt.Sprintf("/v1/timeseries?event_type=page_view&metric=METRIC_COUNT&granularity=GRANULARITY_HOUR&start=%s&end=%s",
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	type timeSeries struct {
		Series []struct {
			Points []struct {
				Time        string  `json:"time"`
				Value       float64 `json:"value"`
				UpdatedTime string  `json:"updated_time"`
			} `json:"points"`
		} `json:"series"`
		Metric      string    `json:"metric"`
		Granularity string    `json:"granularity"`
		Watermark   time.Time `json:"watermark"`
		FinalBefore time.Time `json:"final_before"`
	}
	var ts timeSeries
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := s.do(t, http.MethodGet, q, secret, "")
		if !assert.Equal(c, http.StatusOK, code, string(body)) {
			return
		}
		ts = timeSeries{}
		if assert.NoError(c, json.Unmarshal(body, &ts)) {
			assert.True(c, ts.Watermark.After(acked), "watermark %s passes the last acknowledgement %s", ts.Watermark, acked)
		}
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, "METRIC_COUNT", ts.Metric)
	require.Equal(t, "GRANULARITY_HOUR", ts.Granularity)
	require.Equal(t, ts.Watermark.Add(-7*24*time.Hour), ts.FinalBefore, "the default timestamp past window is a week")
	var sum float64
	for _, p := range ts.Series[0].Points {
		_, err := time.Parse(time.RFC3339, p.Time)
		require.NoError(t, err)
		sum += p.Value
		if p.Value > 0 {
			changed, err := time.Parse(time.RFC3339Nano, p.UpdatedTime)
			require.NoError(t, err, "a non-empty point says when it last changed")
			require.False(t, changed.After(ts.Watermark.Add(time.Minute)))
		}
	}
	require.EqualValues(t, 5, sum)
	s.waitTotal(t, secret, "page_view", now, 5) // and over gRPC
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	keyA := s.tenantWithKey(t, "tenant-a")
	keyB := s.tenantWithKey(t, "tenant-b")

	// Hostile inputs: headers and query parameters naming the other tenant change nothing.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/v1/events?tenant_id=tenant-b", strings.NewReader(eventsJSON(now, "signup", "a-1", "a-2")))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+keyA)
	req.Header.Set("X-Tenant-Id", "tenant-b")
	req.Header.Set("Abacus-Tenant", "tenant-b")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	// Unknown query parameters are refused by the gateway or ignored; either way nothing lands in B.
	if resp.StatusCode != http.StatusOK {
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		code, _, body := s.do(t, http.MethodPost, "/v1/events", keyA, eventsJSON(now, "signup", "a-1", "a-2"))
		require.Equal(t, http.StatusOK, code, string(body))
	}
	ctxB := metadata.AppendToOutgoingContext(bearer(t.Context(), keyB), "x-tenant-id", "tenant-a", "abacus-tenant", "tenant-a")
	r, err := ingestv1.NewIngestServiceClient(s.conn).Ingest(ctxB, &ingestv1.IngestRequest{Events: []*ingestv1.Event{
		event("a-1", "signup", now), // same event_id as tenant A's: a different event, counted for B
		event("b-2", "signup", now), event("b-3", "signup", now),
	}})
	require.NoError(t, err)
	require.EqualValues(t, 3, r.GetAccepted())

	s.waitTotal(t, keyA, "signup", now, 2)
	s.waitTotal(t, keyB, "signup", now, 3)

	// A query naming the other tenant in metadata still answers for the key's own tenant.
	client := queryv1.NewQueryServiceClient(s.conn)
	res, err := client.GetTimeSeries(metadata.AppendToOutgoingContext(bearer(t.Context(), keyA), "x-tenant-id", "tenant-b"), &queryv1.GetTimeSeriesRequest{
		EventType: "signup", Metric: queryv1.Metric_METRIC_COUNT, Granularity: queryv1.Granularity_GRANULARITY_DAY,
		Start: timestamppb.New(now.Add(-48 * time.Hour)), End: timestamppb.New(now.Add(48 * time.Hour)),
	})
	require.NoError(t, err)
	var sum float64
	for _, p := range res.GetSeries()[0].GetPoints() {
		sum += p.GetValue()
	}
	require.EqualValues(t, 2, sum)

	// A tenant key cannot reach the admin API, so it cannot list or touch another tenant's keys.
	code, _, _ := s.do(t, http.MethodGet, "/v1/admin/tenants/tenant-b/api-keys", keyA, "")
	require.Equal(t, http.StatusForbidden, code)
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	both := s.tenantWithKey(t, "auth-tenant")
	ingestOnly := s.key(t, "auth-tenant", adminv1.Scope_SCOPE_INGEST)
	queryOnly := s.key(t, "auth-tenant", adminv1.Scope_SCOPE_QUERY)
	revoked := s.key(t, "auth-tenant")
	unknown := "abk_" + strings.Repeat("A", 16) + strings.Repeat("b", 32) + "000000" // well-formed shape, wrong checksum or unknown id

	// Revoke one key; within the cache TTL (500 ms here, at most 5 s in production) it stops working.
	keyID := revoked[4:20]
	_, err := s.admin.RevokeApiKey(bearer(t.Context(), adminToken), &adminv1.RevokeApiKeyRequest{TenantId: "auth-tenant", KeyId: keyID})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, _, _ := s.do(t, http.MethodPost, "/v1/events", revoked, eventsJSON(now, "x", "rv-1"))
		return code == http.StatusUnauthorized
	}, 10*time.Second, 50*time.Millisecond)

	timeseries := fmt.Sprintf("/v1/timeseries?event_type=x&metric=METRIC_COUNT&granularity=GRANULARITY_DAY&start=%s&end=%s",
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	tests := []struct {
		name, method, path, secret, body string
		header                           string // raw Authorization header, overrides secret
		wantHTTP                         int
		wantText                         string // in the body of a 403: what is missing
	}{
		{name: "no credentials", method: http.MethodPost, path: "/v1/events", body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusUnauthorized},
		{name: "wrong scheme", method: http.MethodPost, path: "/v1/events", header: "Basic " + both, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusUnauthorized},
		{name: "malformed key", method: http.MethodPost, path: "/v1/events", secret: "abk_garbage", body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusUnauthorized},
		{name: "unknown key", method: http.MethodPost, path: "/v1/events", secret: unknown, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusUnauthorized},
		{name: "revoked key", method: http.MethodPost, path: "/v1/events", secret: revoked, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusUnauthorized},
		{name: "query key cannot ingest", method: http.MethodPost, path: "/v1/events", secret: queryOnly, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusForbidden, wantText: "SCOPE_INGEST"},
		{name: "ingest key cannot query", method: http.MethodGet, path: timeseries, secret: ingestOnly, wantHTTP: http.StatusForbidden, wantText: "SCOPE_QUERY"},
		{name: "admin token is not a tenant", method: http.MethodPost, path: "/v1/events", secret: adminToken, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusForbidden, wantText: "TENANT_KEY_REQUIRED"},
		{name: "tenant key cannot administer", method: http.MethodGet, path: "/v1/admin/tenants", secret: both, wantHTTP: http.StatusForbidden, wantText: "ADMIN_REQUIRED"},
		{name: "no credentials on admin", method: http.MethodGet, path: "/v1/admin/tenants", wantHTTP: http.StatusUnauthorized},
		{name: "wrong admin token", method: http.MethodGet, path: "/v1/admin/tenants", secret: adminToken + "x", wantHTTP: http.StatusUnauthorized},
		{name: "valid key ingests", method: http.MethodPost, path: "/v1/events", secret: ingestOnly, body: eventsJSON(now, "x", "n-1"), wantHTTP: http.StatusOK},
		{name: "valid key queries", method: http.MethodGet, path: timeseries, secret: queryOnly, wantHTTP: http.StatusOK},
	}
	invalidBodies := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, s.base+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			switch {
			case tc.header != "":
				req.Header.Set("Authorization", tc.header)
			case tc.secret != "":
				req.Header.Set("Authorization", "Bearer "+tc.secret)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tc.wantHTTP, resp.StatusCode, string(body))
			if tc.wantHTTP == http.StatusUnauthorized {
				require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
			}
			require.Contains(t, string(body), tc.wantText)
			if strings.Contains(tc.name, "key") && tc.wantHTTP == http.StatusUnauthorized {
				invalidBodies[tc.name] = string(body)
			}
		})
	}
	// Unknown, revoked and malformed keys get one identical answer.
	require.Len(t, invalidBodies, 3)
	require.Equal(t, invalidBodies["malformed key"], invalidBodies["unknown key"])
	require.Equal(t, invalidBodies["malformed key"], invalidBodies["revoked key"])

	// The same over gRPC, with status codes.
	ingest := ingestv1.NewIngestServiceClient(s.conn)
	req := &ingestv1.IngestRequest{Events: []*ingestv1.Event{event("grpc-1", "x", now)}}
	_, err = ingest.Ingest(t.Context(), req)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	var msgs []string
	for _, secret := range []string{"abk_garbage", unknown, revoked} {
		_, err = ingest.Ingest(bearer(t.Context(), secret), req)
		require.Equal(t, codes.Unauthenticated, status.Code(err))
		msgs = append(msgs, status.Convert(err).Message())
	}
	require.Equal(t, msgs[0], msgs[1])
	require.Equal(t, msgs[0], msgs[2])
	_, err = ingest.Ingest(bearer(t.Context(), queryOnly), req)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = s.admin.ListTenants(bearer(t.Context(), both), &adminv1.ListTenantsRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "bad-input")
	ts := now.Format(time.RFC3339Nano)
	many := make([]string, 10001)
	for i := range many {
		many[i] = fmt.Sprintf("m-%d", i)
	}

	tests := []struct {
		name     string
		body     string
		wantHTTP int
		wantText string // the problem, named in the answer
	}{
		{"missing event_id", `{"events":[{"type":"x","timestamp":"` + ts + `"}]}`, 400, "event_id"},
		{"empty event_id", `{"events":[{"event_id":"","type":"x","timestamp":"` + ts + `"}]}`, 400, "event_id"},
		{"bad type", `{"events":[{"event_id":"b-1","type":"9 bad type!","timestamp":"` + ts + `"}]}`, 400, "type"},
		{"oversized property", `{"events":[{"event_id":"b-2","type":"x","timestamp":"` + ts + `","properties":{"plan":"` + strings.Repeat("p", 2000) + `"}}]}`, 400, "plan"},
		{"missing timestamp", `{"events":[{"event_id":"b-3","type":"x"}]}`, 400, "timestamp"},
		{"too many events", eventsJSON(now, "x", many...), 400, "events"},
		{"no events", `{"events":[]}`, 400, "events"},
		{"malformed JSON", `{"events":[{"event_id":"b-4",`, 400, "invalid JSON body"},
		{"wrong type for event_id", `{"events":[{"event_id":5,"type":"x","timestamp":"` + ts + `"}]}`, 400, "event_id"},
		{"wrong type for events", `{"events":"all of them"}`, 400, `unexpected token \"all of them\"`},
		{"bad timestamp", `{"events":[{"event_id":"b-5","type":"x","timestamp":"yesterday"}]}`, 400, `Timestamp value \"yesterday\"`},
		{"unknown field", `{"events":[{"event_id":"b-6","type":"x","timestamp":"` + ts + `","tenant_id":"other"}]}`, 400, "tenant_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, body := s.do(t, http.MethodPost, "/v1/events", secret, tc.body)
			require.Equal(t, tc.wantHTTP, code, string(body))
			require.Contains(t, string(body), tc.wantText)
		})
	}

	// Invalid events never cost their valid neighbours: a mixed batch is accepted in part, and
	// every rejected event is listed with its index, id, reason and message.
	mixed := `{"events":[` +
		`{"event_id":"ok-1","type":"mixed","timestamp":"` + ts + `"},` +
		`{"event_id":"","type":"mixed","timestamp":"` + ts + `"},` +
		`{"event_id":"ok-2","type":"mixed","timestamp":"` + ts + `"},` +
		`{"event_id":"old-1","type":"mixed","timestamp":"` + now.Add(-30*24*time.Hour).Format(time.RFC3339) + `"}` +
		`]}`
	code, _, body := s.do(t, http.MethodPost, "/v1/events", secret, mixed)
	require.Equal(t, http.StatusOK, code, string(body))
	var resp struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index   int    `json:"index"`
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"rejected"`
	}
	require.NoError(t, json.Unmarshal(body, &resp))
	require.Equal(t, 2, resp.Accepted)
	require.Len(t, resp.Rejected, 2)
	require.Equal(t, 1, resp.Rejected[0].Index)
	require.Equal(t, "REJECT_REASON_INVALID_EVENT_ID", resp.Rejected[0].Reason)
	require.Equal(t, 3, resp.Rejected[1].Index)
	require.Equal(t, "old-1", resp.Rejected[1].EventID)
	require.Equal(t, "REJECT_REASON_TIMESTAMP_TOO_OLD", resp.Rejected[1].Reason)
	require.NotEmpty(t, resp.Rejected[1].Message)
	s.waitTotal(t, secret, "mixed", now, 2)

	// gRPC: a request whose every event is invalid is INVALID_ARGUMENT naming the field.
	_, err := ingestv1.NewIngestServiceClient(s.conn).Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{
		Events: []*ingestv1.Event{{EventId: "", Type: "x", Timestamp: timestamppb.New(now)}},
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "event_id")

	// Admin input is validated too.
	code, _, body = s.do(t, http.MethodPost, "/v1/admin/tenants", adminToken, `{"tenant_id":"Bad Tenant!"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), "tenant_id")
}

func TestHealthReadinessMetricsOpenAPI(t *testing.T) {
	t.Parallel()
	s := startSystem(t)

	code, _, body := s.do(t, http.MethodGet, "/healthz", "", "")
	require.Equal(t, http.StatusOK, code, string(body))
	code, _, body = s.do(t, http.MethodGet, "/readyz", "", "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"status":"ready","checks":{"postgres":"ok","redis":"ok","kafka":"ok"}}`, string(body))

	// One call so that per-RPC metrics have a sample.
	code, _, _ = s.do(t, http.MethodGet, "/v1/admin/tenants", adminToken, "")
	require.Equal(t, http.StatusOK, code)
	code, _, body = s.do(t, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `abacus_grpc_requests_total{code="OK",method="/abacus.admin.v1.AdminService/ListTenants"} 1`)
	require.Contains(t, string(body), `abacus_grpc_request_duration_seconds_bucket{method="/abacus.admin.v1.AdminService/ListTenants"`)

	code, _, body = s.do(t, http.MethodGet, "/openapi.json", "", "")
	require.Equal(t, http.StatusOK, code)
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	for _, p := range []string{"/v1/events", "/v1/timeseries", "/v1/admin/tenants", "/v1/admin/tenants/{tenant_id}/api-keys"} {
		require.Contains(t, doc.Paths, p)
	}
}

func TestKafkaUnavailable(t *testing.T) {
	t.Parallel()
	// A broker with a data directory, so that its restart keeps the log as a real cluster would.
	kafka, err := devstack.StartKafka(t.Context(), t.TempDir(), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(kafka.Stop)
	s := startSystem(t, withKafka(kafka), func(c *config.Config) { c.ProduceTimeout = 2 * time.Second })
	secret := s.tenantWithKey(t, "kafka-down")
	now := time.Now().UTC()
	code, _, body := s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "k", "before"))
	require.Equal(t, http.StatusOK, code, string(body))
	s.waitTotal(t, secret, "k", now, 1)

	kafka.Stop()

	// REST: 503 with Retry-After, within the produce deadline (the request has no other bound).
	code, hdr, body := s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "k", "during-1"))
	require.Equal(t, http.StatusServiceUnavailable, code, string(body))
	require.NotEmpty(t, hdr.Get("Retry-After"))
	// gRPC: UNAVAILABLE within the caller's own deadline.
	ctx, cancel := context.WithTimeout(bearer(t.Context(), secret), 5*time.Second)
	defer cancel()
	_, err = ingestv1.NewIngestServiceClient(s.conn).Ingest(ctx, &ingestv1.IngestRequest{Events: []*ingestv1.Event{event("during-2", "k", now)}})
	require.Contains(t, []codes.Code{codes.Unavailable, codes.DeadlineExceeded}, status.Code(err), "%v", err)
	require.NoError(t, ctx.Err(), "the answer came before the client's deadline")

	require.NoError(t, kafka.Restart(t.Context()))

	// Recovery: the client retries the same events and every one is counted exactly once.
	require.Eventually(t, func() bool {
		code, _, _ := s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "k", "during-1", "during-2", "after"))
		return code == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	s.waitTotal(t, secret, "k", now, 4)
}

func TestIngestStreamThroughTheChain(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "streamer")
	queryOnly := s.key(t, "streamer", adminv1.Scope_SCOPE_QUERY)
	client := ingestv1.NewIngestServiceClient(s.conn)

	stream, err := client.IngestStream(bearer(t.Context(), secret))
	require.NoError(t, err)
	batches := map[uint64][]*ingestv1.Event{
		1: {event("s-1", "stream", now), event("s-2", "stream", now)},
		2: {event("s-3", "stream", now), {EventId: "s-bad", Type: "stream"}}, // no timestamp
		3: {event("s-1", "stream", now), event("s-4", "stream", now)},        // s-1 retried: counted once
	}
	for seq := uint64(1); seq <= 3; seq++ {
		require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: seq, Events: batches[seq]}))
	}
	require.NoError(t, stream.CloseSend())
	got := map[uint64]*ingestv1.IngestStreamResponse{}
	for range 3 {
		resp, err := stream.Recv()
		require.NoError(t, err)
		got[resp.GetSequence()] = resp
	}
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
	require.EqualValues(t, 2, got[1].GetAccepted())
	require.EqualValues(t, 1, got[2].GetAccepted())
	require.Len(t, got[2].GetRejected(), 1)
	require.EqualValues(t, 1, got[2].GetRejected()[0].GetIndex())
	require.Equal(t, ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_MISSING, got[2].GetRejected()[0].GetReason())
	require.EqualValues(t, 2, got[3].GetAccepted())
	s.waitTotal(t, secret, "stream", now, 4)

	// The chain authenticates streams too.
	denied, err := client.IngestStream(bearer(t.Context(), queryOnly))
	require.NoError(t, err)
	_, err = denied.Recv()
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	anonymous, err := client.IngestStream(t.Context())
	require.NoError(t, err)
	_, err = anonymous.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err))
}
