package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/abacus-analytics/abacus/eventlog"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
	"github.com/abacus-analytics/abacus/internal/config"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

// fastLimits makes limit overrides take effect quickly.
func fastLimits(c *config.Config) { c.LimitsRefresh = 100 * time.Millisecond }

// setLimits overrides a tenant's limits through the admin API.
func (s *system) setLimits(t *testing.T, tenant string, limits *adminv1.TenantLimits, paths ...string) {
	t.Helper()
	_, err := s.admin.UpdateTenant(bearer(t.Context(), adminToken), &adminv1.UpdateTenantRequest{
		Tenant:     &adminv1.Tenant{TenantId: tenant, Limits: limits},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	require.NoError(t, err)
}

// waitLimits waits until the tenant sees the given events-per-second limit.
func (s *system) waitLimits(t *testing.T, secret string, eventsPerSecond float64) {
	t.Helper()
	client := tenantv1.NewTenantServiceClient(s.conn)
	require.Eventually(t, func() bool {
		resp, err := client.GetLimits(bearer(t.Context(), secret), &tenantv1.GetLimitsRequest{})
		return err == nil && resp.GetLimits().GetEventsPerSecond() == eventsPerSecond
	}, 10*time.Second, 50*time.Millisecond)
}

func ptr[T any](v T) *T { return &v }

// TestThrottlingOverREST: a tenant over its rate gets 429 with Retry-After
// and RateLimit-* headers and a body naming the limit; partial throttling
// is a 200 listing the throttled events; the limits and the usage are
// readable with the tenant's own key.
func TestThrottlingOverREST(t *testing.T) {
	t.Parallel()
	s := startSystem(t, fastLimits)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "thr")
	s.setLimits(t, "thr", &adminv1.TenantLimits{EventsPerSecond: ptr(1.0), EventsBurst: ptr(int64(5)), MonthlyEventQuota: ptr(int64(1000)), MonthlyEventQuotaSoft: ptr(int64(4))},
		"limits.events_per_second", "limits.events_burst", "limits.monthly_event_quota", "limits.monthly_event_quota_soft")
	s.waitLimits(t, secret, 1)

	// 8 events against a burst of 5: 5 accepted, 3 throttled, 200 with headers.
	ids := []string{"r-1", "r-2", "r-3", "r-4", "r-5", "r-6", "r-7", "r-8"}
	code, header, body := s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "click", ids...))
	require.Equal(t, http.StatusOK, code, string(body))
	var partial struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index      int    `json:"index"`
			Reason     string `json:"reason"`
			RetryAfter string `json:"retry_after"`
		} `json:"rejected"`
	}
	require.NoError(t, json.Unmarshal(body, &partial))
	require.Equal(t, 5, partial.Accepted)
	require.Len(t, partial.Rejected, 3)
	for i, r := range partial.Rejected {
		require.Equal(t, 5+i, r.Index)
		require.Equal(t, "REJECT_REASON_RATE_LIMITED", r.Reason)
		require.NotEmpty(t, r.RetryAfter)
	}
	require.Equal(t, "5", header.Get("RateLimit-Limit"))
	require.Equal(t, "0", header.Get("RateLimit-Remaining"))
	reset, err := strconv.Atoi(header.Get("RateLimit-Reset"))
	require.NoError(t, err)
	require.Positive(t, reset)

	// Everything throttled: 429, Retry-After, and the limit named.
	code, header, body = s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "click", "r-9", "r-10"))
	require.Equal(t, http.StatusTooManyRequests, code, string(body))
	retry, err := strconv.Atoi(header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, retry, 1)
	require.Equal(t, "5", header.Get("RateLimit-Limit"))
	require.Contains(t, string(body), "RATE_LIMITED")
	require.Contains(t, string(body), "events_per_second")
	require.Contains(t, string(body), "google.rpc.QuotaFailure")

	// Limits and usage, with the tenant's own key.
	code, _, body = s.do(t, http.MethodGet, "/v1/limits", secret, "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), `"events_burst":"5"`)
	require.Eventually(t, func() bool {
		code, _, body = s.do(t, http.MethodGet, "/v1/usage", secret, "")
		return code == http.StatusOK && strings.Contains(string(body), `"events_accepted":"5"`)
	}, 10*time.Second, 50*time.Millisecond, "usage: %s", body)
	require.Contains(t, string(body), `"quota_remaining":"995"`)
	require.Contains(t, string(body), `"soft_threshold_exceeded":true`)
	require.Contains(t, string(body), `"period_end"`)
}

// TestQuotaExhaustionIsToldApart: an exhausted monthly quota answers
// RESOURCE_EXHAUSTED naming the quota, not the rate, with a retry at the
// start of the next month.
func TestQuotaExhaustionIsToldApart(t *testing.T) {
	t.Parallel()
	s := startSystem(t, fastLimits)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "quota")
	s.setLimits(t, "quota", &adminv1.TenantLimits{MonthlyEventQuota: ptr(int64(3)), EventsPerSecond: ptr(2.0)}, "limits.monthly_event_quota", "limits.events_per_second")
	s.waitLimits(t, secret, 2)

	client := ingestv1.NewIngestServiceClient(s.conn)
	resp, err := client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: []*ingestv1.Event{
		event("q-1", "x", now), event("q-2", "x", now), event("q-3", "x", now), event("q-4", "x", now),
	}})
	require.NoError(t, err)
	require.EqualValues(t, 3, resp.GetAccepted())
	require.Equal(t, ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED, resp.GetRejected()[0].GetReason())

	_, err = client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: []*ingestv1.Event{event("q-5", "x", now)}})
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), st.Message())
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	require.Equal(t, "QUOTA_EXHAUSTED", info.GetReason())
	require.Equal(t, "monthly_event_quota", info.GetMetadata()["limit"])
	nextMonth := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	require.WithinDuration(t, nextMonth, time.Now().Add(retry.GetRetryDelay().AsDuration()), time.Minute)
}

// TestSuspendedTenant: suspension refuses new calls with TENANT_SUSPENDED and
// reaches an open stream within the cache TTL; resuming restores both.
func TestSuspendedTenant(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "susp")
	client := ingestv1.NewIngestServiceClient(s.conn)
	stream, err := client.IngestStream(bearer(t.Context(), secret))
	require.NoError(t, err)
	send := func(seq uint64) *ingestv1.IngestStreamResponse {
		require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: seq, Events: []*ingestv1.Event{event(fmt.Sprintf("su-%d", seq), "x", now)}}))
		resp, err := stream.Recv()
		require.NoError(t, err)
		return resp
	}
	require.EqualValues(t, 1, send(1).GetAccepted())

	setState := func(state adminv1.TenantState) {
		_, err := s.admin.UpdateTenant(bearer(t.Context(), adminToken), &adminv1.UpdateTenantRequest{
			Tenant: &adminv1.Tenant{TenantId: "susp", State: state}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}},
		})
		require.NoError(t, err)
	}
	setState(adminv1.TenantState_TENANT_STATE_SUSPENDED)
	seq := uint64(1)
	require.Eventually(t, func() bool {
		seq++
		resp := send(seq)
		return len(resp.GetRejected()) == 1 && resp.GetRejected()[0].GetReason() == ingestv1.RejectReason_REJECT_REASON_TENANT_SUSPENDED
	}, 10*time.Second, 50*time.Millisecond, "the open stream learns of the suspension")
	_, err = client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: []*ingestv1.Event{event("su-x", "x", now)}})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Contains(t, fmt.Sprint(status.Convert(err).Details()), "TENANT_SUSPENDED")

	setState(adminv1.TenantState_TENANT_STATE_ACTIVE)
	require.Eventually(t, func() bool {
		seq++
		return send(seq).GetAccepted() == 1
	}, 10*time.Second, 50*time.Millisecond, "resumed")
}

// TestKeyRotationAndLastUse: a rotated key keeps working until its grace
// deadline next to its successor; last use is recorded.
func TestKeyRotationAndLastUse(t *testing.T) {
	t.Parallel()
	s := startSystem(t)
	now := time.Now().UTC()
	old := s.tenantWithKey(t, "rot")
	oldID := old[4:20]
	client := ingestv1.NewIngestServiceClient(s.conn)
	ingestWith := func(secret, id string) error {
		_, err := client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: []*ingestv1.Event{event(id, "x", now)}})
		return err
	}
	require.NoError(t, ingestWith(old, "k-1"))

	rotated, err := s.admin.RotateApiKey(bearer(t.Context(), adminToken), &adminv1.RotateApiKeyRequest{TenantId: "rot", KeyId: oldID})
	require.NoError(t, err)
	require.NoError(t, ingestWith(rotated.GetSecret(), "k-2"), "the successor works")
	require.NoError(t, ingestWith(old, "k-3"), "the old key works during the grace period")

	// Last use shows up within the toucher's flush interval.
	require.Eventually(t, func() bool {
		keys, err := s.admin.ListApiKeys(bearer(t.Context(), adminToken), &adminv1.ListApiKeysRequest{TenantId: "rot"})
		require.NoError(t, err)
		for _, k := range keys.GetApiKeys() {
			if k.GetKeyId() == oldID && k.GetLastUsedTime() != nil {
				return true
			}
		}
		return false
	}, 20*time.Second, 200*time.Millisecond)

	// Rotating the successor with no grace ends it at once.
	newID := rotated.GetSecret()[4:20]
	third, err := s.admin.RotateApiKey(bearer(t.Context(), adminToken), &adminv1.RotateApiKeyRequest{TenantId: "rot", KeyId: newID, GracePeriod: durationpb.New(0)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return status.Code(ingestWith(rotated.GetSecret(), "k-4")) == codes.Unauthenticated }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, ingestWith(third.GetSecret(), "k-5"))

	// A key cannot be rotated twice.
	_, err = s.admin.RotateApiKey(bearer(t.Context(), adminToken), &adminv1.RotateApiKeyRequest{TenantId: "rot", KeyId: oldID})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
}

// TestFailedAuthenticationsAreLimited: an address that keeps failing to
// authenticate is refused before its credentials are looked at.
func TestFailedAuthenticationsAreLimited(t *testing.T) {
	t.Parallel()
	s := startSystem(t, func(c *config.Config) { c.AuthFailureBurst, c.AuthFailureRate = 3, 0.1 })
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "guarded")
	for range 3 {
		code, _, _ := s.do(t, http.MethodPost, "/v1/events", "abk_garbage", eventsJSON(now, "x", "g-1"))
		require.Equal(t, http.StatusUnauthorized, code)
	}
	require.Eventually(t, func() bool {
		code, _, _ := s.do(t, http.MethodPost, "/v1/events", "abk_garbage", eventsJSON(now, "x", "g-1"))
		return code == http.StatusTooManyRequests
	}, 5*time.Second, 20*time.Millisecond)
	code, header, body := s.do(t, http.MethodPost, "/v1/events", secret, eventsJSON(now, "x", "g-2"))
	require.Equal(t, http.StatusTooManyRequests, code, "the address is refused whatever it presents: %s", body)
	require.NotEmpty(t, header.Get("Retry-After"))
	require.Contains(t, string(body), "AUTH_RATE_LIMITED")
}

// TestRedisStoppedMidRun: with Redis down, ingest goes on under per-node
// limits (and still throttles), revoked keys stay revoked, and the shared
// limits come back with Redis. Not parallel: it stops the package's Redis.
func TestRedisStoppedMidRun(t *testing.T) {
	s := startSystem(t, fastLimits)
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "redisless")
	doomed := s.key(t, "redisless")
	s.setLimits(t, "redisless", &adminv1.TenantLimits{EventsPerSecond: ptr(5.0), EventsBurst: ptr(int64(20))}, "limits.events_per_second", "limits.events_burst")
	s.waitLimits(t, secret, 5)
	client := ingestv1.NewIngestServiceClient(s.conn)
	batch := func(prefix string, n int) []*ingestv1.Event {
		out := make([]*ingestv1.Event, n)
		for i := range out {
			out[i] = event(fmt.Sprintf("%s-%d", prefix, i), "x", now)
		}
		return out
	}
	resp, err := client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: batch("before", 10)})
	require.NoError(t, err)
	require.EqualValues(t, 10, resp.GetAccepted())

	redisSrv := devstacktest.RedisServer(t)
	require.NoError(t, redisSrv.Stop())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, redisSrv.Restart(t.Context()))
		}
	})

	// Ingest continues, under the local limit: 30 events against a local
	// bucket that already holds this node's recent use cannot all pass.
	resp, err = client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: batch("during", 30)})
	require.NoError(t, err)
	require.Positive(t, resp.GetAccepted())
	require.Less(t, int(resp.GetAccepted()), 30, "still limited while Redis is down")
	require.Equal(t, ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, resp.GetRejected()[0].GetReason())
	code, _, body := s.do(t, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "abacus_ratelimit_fallback_active 1")

	// A key revoked now stops working: authentication does not need Redis.
	_, err = s.admin.RevokeApiKey(bearer(t.Context(), adminToken), &adminv1.RevokeApiKeyRequest{TenantId: "redisless", KeyId: doomed[4:20]})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := client.Ingest(bearer(t.Context(), doomed), &ingestv1.IngestRequest{Events: batch("doomed", 1)})
		return status.Code(err) == codes.Unauthenticated
	}, 10*time.Second, 50*time.Millisecond)

	require.NoError(t, redisSrv.Restart(t.Context()))
	restarted = true
	require.Eventually(t, func() bool {
		_, _ = client.Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: batch(fmt.Sprint("after-", time.Now().UnixNano()), 1)})
		_, _, body := s.do(t, http.MethodGet, "/metrics", "", "")
		return strings.Contains(string(body), "abacus_ratelimit_fallback_active 0")
	}, 20*time.Second, 200*time.Millisecond, "back on the shared limits")
}

// TestKafkaShardsFollowTheTenantsLimit: raising a tenant's kafka_shards
// spreads its new events over record keys tenant/1..N-1 (and the plain
// tenant key for shard 0), every record still carrying the tenant.
func TestKafkaShardsFollowTheTenantsLimit(t *testing.T) {
	t.Parallel()
	k := devstacktest.Kafka(t)
	s := startSystem(t, fastLimits, withKafka(k))
	now := time.Now().UTC()
	secret := s.tenantWithKey(t, "sharded")
	s.setLimits(t, "sharded", &adminv1.TenantLimits{KafkaShards: ptr(int32(4)), EventsPerSecond: ptr(9999.0)},
		"limits.kafka_shards", "limits.events_per_second")
	s.waitLimits(t, secret, 9999)

	events := make([]*ingestv1.Event, 40)
	for i := range events {
		events[i] = event(fmt.Sprintf("sh-%d", i), "x", now)
		events[i].UserId = fmt.Sprintf("user-%d", i)
	}
	resp, err := ingestv1.NewIngestServiceClient(s.conn).Ingest(bearer(t.Context(), secret), &ingestv1.IngestRequest{Events: events})
	require.NoError(t, err)
	require.EqualValues(t, 40, resp.GetAccepted())

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.ConsumeTopics(eventlog.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	keys := map[string]int{}
	total := 0
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for total < 40 {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of 40 events", total)
		for _, r := range fetches.Records() {
			tenant, batch, err := eventlog.Decode(r)
			require.NoError(t, err)
			require.Equal(t, "sharded", string(tenant))
			keys[string(r.Key)] += len(batch.GetEvents())
			total += len(batch.GetEvents())
		}
	}
	require.Greater(t, len(keys), 1, "40 users over 4 shards use several keys: %v", keys)
	for key := range keys {
		require.Contains(t, []string{"sharded", "sharded/1", "sharded/2", "sharded/3"}, key)
	}
}

// TestRetentionLimitsAndJob: retention limits set through the admin API are
// the tenant's own to read, combinations the contract refuses are refused by
// the server's validation, and the rollup role runs the retention job.
func TestRetentionLimitsAndJob(t *testing.T) {
	t.Parallel()
	s := startSystem(t, fastLimits)
	secret := s.tenantWithKey(t, "keeper")
	s.setLimits(t, "keeper", &adminv1.TenantLimits{EventsBurst: ptr(int64(77))}, "limits.events_burst")
	// As the README shows it: the gateway derives the update mask from the body.
	code, _, body := s.do(t, http.MethodPatch, "/v1/admin/tenants/keeper", adminToken,
		`{"limits":{"raw_retention":"31536000s","rollup_retention":"157680000s"}}`)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), `"events_burst":"77"`, "the other overrides stay")
	require.Eventually(t, func() bool {
		code, _, body := s.do(t, http.MethodGet, "/v1/limits", secret, "")
		return code == http.StatusOK && strings.Contains(string(body), `"raw_retention":"31536000s"`) &&
			strings.Contains(string(body), `"rollup_retention":"157680000s"`)
	}, 10*time.Second, 50*time.Millisecond)

	_, err := s.admin.UpdateTenant(bearer(t.Context(), adminToken), &adminv1.UpdateTenantRequest{
		Tenant: &adminv1.Tenant{TenantId: "keeper", Limits: &adminv1.TenantLimits{
			RawRetention: durationpb.New(400 * 24 * time.Hour), RollupRetention: durationpb.New(300 * 24 * time.Hour),
		}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"limits.raw_retention", "limits.rollup_retention"}},
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Equal(t, []string{"tenant.limits"}, fields, "%v", err)
	require.Contains(t, err.Error(), "rollup_retention must be at least raw_retention")

	// The job runs a round as the process starts.
	require.Eventually(t, func() bool {
		code, _, body := s.do(t, http.MethodGet, "/metrics", "", "")
		return code == http.StatusOK && strings.Contains(string(body), "abacus_retention_last_success_timestamp_seconds ") &&
			!strings.Contains(string(body), "abacus_retention_last_success_timestamp_seconds 0\n")
	}, 10*time.Second, 50*time.Millisecond)
}
