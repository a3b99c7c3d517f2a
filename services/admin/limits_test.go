package admin_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func ptr[T any](v T) *T { return &v }

// updateLimits sends UpdateTenant for tenant id with limits and the mask paths.
func updateLimits(t *testing.T, e env, id string, limits *adminv1.TenantLimits, paths ...string) (*adminv1.Tenant, error) {
	t.Helper()
	resp, err := e.svc.UpdateTenant(t.Context(), &adminv1.UpdateTenantRequest{
		Tenant:     &adminv1.Tenant{TenantId: id, Limits: limits},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	return resp.GetTenant(), err
}

// requireLimits checks that the response, a fresh read and the overrides that
// every node loads all agree on want.
func requireLimits(t *testing.T, e env, id string, got *adminv1.Tenant, want *adminv1.TenantLimits) {
	t.Helper()
	require.True(t, proto.Equal(want, got.GetLimits()), "response limits\nwant %v\ngot  %v", want, got.GetLimits())
	read, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
	require.NoError(t, err)
	require.True(t, proto.Equal(want, read.GetTenant().GetLimits()), "stored limits\nwant %v\ngot  %v", want, read.GetTenant().GetLimits())
}

// violations returns the BadRequest field violations of an INVALID_ARGUMENT.
func violations(t *testing.T, err error) map[string]string {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "want a gRPC status, got %v", err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	out := map[string]string{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}

// everyLimit sets every TenantLimits field to a valid value that is not the
// default.
func everyLimit() *adminv1.TenantLimits {
	return &adminv1.TenantLimits{
		EventsPerSecond:        ptr(500.5),
		EventsBurst:            ptr(int64(1000)),
		RequestsPerSecond:      ptr(20.0),
		MaxBatchEvents:         ptr(int32(250)),
		MaxEventBytes:          ptr(int32(4096)),
		MaxProperties:          ptr(int32(8)),
		TimestampPastWindow:    durationpb.New(48 * time.Hour),
		TimestampFutureWindow:  durationpb.New(0),
		MonthlyEventQuota:      ptr(int64(0)),
		MonthlyEventQuotaSoft:  ptr(int64(5_000_000)),
		QueryRequestsPerSecond: ptr(2.5),
		KafkaShards:            ptr(int32(16)),
		RawRetention:           durationpb.New(30 * 24 * time.Hour),
		RollupRetention:        durationpb.New(400 * 24 * time.Hour),
	}
}

// limitFieldNames are the TenantLimits field names, as mask paths use them.
func limitFieldNames() []string {
	fields := (&adminv1.TenantLimits{}).ProtoReflect().Descriptor().Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	return names
}

// only returns a TenantLimits with just field name copied from src.
func only(src *adminv1.TenantLimits, name string) *adminv1.TenantLimits {
	out := &adminv1.TenantLimits{}
	fd := out.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	out.ProtoReflect().Set(fd, src.ProtoReflect().Get(fd))
	return out
}

func TestNewTenantHasNoOverrides(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := createTenant(t, e, "acme", "Acme")
	require.NotNil(t, created.GetLimits())
	require.True(t, proto.Equal(&adminv1.TenantLimits{}, created.GetLimits()))
}

func TestUpdateTenantLimitsEveryField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	all := everyLimit()
	for i, name := range limitFieldNames() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("tenant-%d", i)
			createTenant(t, e, id, "")

			// Set one override: only that field appears.
			got, err := updateLimits(t, e, id, all, "limits."+name)
			require.NoError(t, err)
			requireLimits(t, e, id, got, only(all, name))

			// Send the field unset: the override is removed.
			got, err = updateLimits(t, e, id, &adminv1.TenantLimits{}, "limits."+name)
			require.NoError(t, err)
			requireLimits(t, e, id, got, &adminv1.TenantLimits{})
		})
	}

	t.Run("all fields reach the limits every node loads", func(t *testing.T) {
		t.Parallel()
		createTenant(t, e, "loaded", "")
		_, err := updateLimits(t, e, "loaded", all, "limits")
		require.NoError(t, err)
		loaded, err := e.db.LoadLimitOverrides(t.Context())
		require.NoError(t, err)
		require.Equal(t, tenancy.LimitOverrides{
			EventsPerSecond:        ptr(500.5),
			EventsBurst:            ptr(int64(1000)),
			RequestsPerSecond:      ptr(20.0),
			MaxBatchEvents:         ptr(250),
			MaxEventBytes:          ptr(4096),
			MaxProperties:          ptr(8),
			TimestampPastWindow:    ptr(48 * time.Hour),
			TimestampFutureWindow:  ptr(time.Duration(0)),
			MonthlyEventQuota:      ptr(int64(0)),
			MonthlyEventQuotaSoft:  ptr(int64(5_000_000)),
			QueryRequestsPerSecond: ptr(2.5),
			KafkaShards:            ptr(16),
			RawRetention:           ptr(30 * 24 * time.Hour),
			RollupRetention:        ptr(400 * 24 * time.Hour),
		}, loaded["loaded"])
	})
}

func TestUpdateTenantLimitsMaskPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Every case starts from a tenant named "Original" with these overrides.
	start := &adminv1.TenantLimits{EventsPerSecond: ptr(100.0), KafkaShards: ptr(int32(4))}

	tests := []struct {
		name      string
		limits    *adminv1.TenantLimits
		paths     []string
		want      *adminv1.TenantLimits
		wantName  string
		wantField string // INVALID_ARGUMENT naming this field
	}{
		{
			name:   "limits replaces every override",
			limits: &adminv1.TenantLimits{MaxProperties: ptr(int32(3))},
			paths:  []string{"limits"},
			want:   &adminv1.TenantLimits{MaxProperties: ptr(int32(3))},
		},
		{
			name:  "limits without a message removes every override",
			paths: []string{"limits"},
			want:  &adminv1.TenantLimits{},
		},
		{
			name:   "one field keeps the others",
			limits: &adminv1.TenantLimits{EventsBurst: ptr(int64(50))},
			paths:  []string{"limits.events_burst"},
			want:   &adminv1.TenantLimits{EventsPerSecond: ptr(100.0), EventsBurst: ptr(int64(50)), KafkaShards: ptr(int32(4))},
		},
		{
			name:   "one field replaces its override",
			limits: &adminv1.TenantLimits{KafkaShards: ptr(int32(32))},
			paths:  []string{"limits.kafka_shards"},
			want:   &adminv1.TenantLimits{EventsPerSecond: ptr(100.0), KafkaShards: ptr(int32(32))},
		},
		{
			name:   "an unset field removes its override",
			limits: &adminv1.TenantLimits{},
			paths:  []string{"limits.events_per_second"},
			want:   &adminv1.TenantLimits{KafkaShards: ptr(int32(4))},
		},
		{
			name:   "fields outside the mask are ignored",
			limits: &adminv1.TenantLimits{EventsBurst: ptr(int64(50)), MaxProperties: ptr(int32(1)), KafkaShards: nil},
			paths:  []string{"limits.max_properties"},
			want:   &adminv1.TenantLimits{EventsPerSecond: ptr(100.0), MaxProperties: ptr(int32(1)), KafkaShards: ptr(int32(4))},
		},
		{
			name:   "several fields and the display name at once",
			limits: &adminv1.TenantLimits{MaxBatchEvents: ptr(int32(10)), TimestampPastWindow: durationpb.New(time.Hour)},
			paths:  []string{"display_name", "limits.max_batch_events", "limits.timestamp_past_window", "limits.kafka_shards"},
			want: &adminv1.TenantLimits{EventsPerSecond: ptr(100.0), MaxBatchEvents: ptr(int32(10)),
				TimestampPastWindow: durationpb.New(time.Hour)},
			wantName: "Renamed",
		},
		{
			name:   "limits and limits.<field> together",
			limits: &adminv1.TenantLimits{EventsBurst: ptr(int64(9))},
			paths:  []string{"limits.events_burst", "limits", "limits.events_burst"},
			want:   &adminv1.TenantLimits{EventsBurst: ptr(int64(9))},
		},
		{
			name:   "display name alone leaves the limits",
			limits: &adminv1.TenantLimits{EventsBurst: ptr(int64(9))},
			paths:  []string{"display_name"},
			want:   start, wantName: "Renamed",
		},
		{name: "unknown limit", limits: &adminv1.TenantLimits{}, paths: []string{"limits.events_per_minute"}, wantField: "update_mask"},
		{name: "empty limit name", paths: []string{"limits."}, wantField: "update_mask"},
		{name: "below a limit", paths: []string{"limits.timestamp_past_window.seconds"}, wantField: "update_mask"},
		{name: "JSON name", paths: []string{"limits.eventsPerSecond"}, wantField: "update_mask"},
		{name: "prefix only", paths: []string{"limitsx"}, wantField: "update_mask"},
		{name: "too many paths", paths: slicesRepeat("limits", 65), wantField: "update_mask"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("tenant-%d", i)
			createTenant(t, e, id, "Original")
			before, err := updateLimits(t, e, id, start, "limits")
			require.NoError(t, err)

			resp, err := e.svc.UpdateTenant(t.Context(), &adminv1.UpdateTenantRequest{
				Tenant:     &adminv1.Tenant{TenantId: id, DisplayName: "Renamed", Limits: tt.limits},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: tt.paths},
			})
			if tt.wantField != "" {
				requireInvalidArgument(t, err, tt.wantField)
				if len(tt.paths) == 1 {
					require.ErrorContains(t, err, fmt.Sprintf("%q", tt.paths[0]), "the error names the path")
					require.ErrorContains(t, err, "limits.kafka_shards", "the error lists the allowed paths")
				}
				got, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
				require.NoError(t, err)
				require.Equal(t, before.String(), got.GetTenant().String(), "a refused update changes nothing")
				return
			}
			require.NoError(t, err)
			wantName := "Original"
			if tt.wantName != "" {
				wantName = tt.wantName
			}
			require.Equal(t, wantName, resp.GetTenant().GetDisplayName())
			requireLimits(t, e, id, resp.GetTenant(), tt.want)
		})
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestUpdateTenantInvalidLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	tests := []struct {
		name   string
		limits *adminv1.TenantLimits
		paths  []string
		// wantFields are every field the answer must name, and no others.
		wantFields []string
	}{
		{
			name: "every problem is named",
			limits: &adminv1.TenantLimits{
				EventsPerSecond: ptr(-1.0),
				EventsBurst:     ptr(int64(0)),
				MaxBatchEvents:  ptr(int32(10001)),
				MaxEventBytes:   ptr(int32(100)),
				KafkaShards:     ptr(int32(257)),
				MaxProperties:   ptr(int32(5)), // valid
			},
			paths: []string{"limits"},
			wantFields: []string{
				"tenant.limits.events_per_second", "tenant.limits.events_burst", "tenant.limits.max_batch_events",
				"tenant.limits.max_event_bytes", "tenant.limits.kafka_shards",
			},
		},
		{
			name:       "one masked field",
			limits:     &adminv1.TenantLimits{TimestampPastWindow: durationpb.New(-time.Second)},
			paths:      []string{"limits.timestamp_past_window"},
			wantFields: []string{"tenant.limits.timestamp_past_window"},
		},
		{
			name:       "not a number",
			limits:     &adminv1.TenantLimits{QueryRequestsPerSecond: ptr(nan())},
			paths:      []string{"limits.query_requests_per_second"},
			wantFields: []string{"tenant.limits.query_requests_per_second"},
		},
		{
			name:       "beyond the contract's upper bound",
			limits:     &adminv1.TenantLimits{TimestampFutureWindow: durationpb.New(48 * time.Hour), RequestsPerSecond: ptr(inf())},
			paths:      []string{"limits"},
			wantFields: []string{"tenant.limits.timestamp_future_window", "tenant.limits.requests_per_second"},
		},
		{
			name:       "invalid duration",
			limits:     &adminv1.TenantLimits{TimestampPastWindow: &durationpb.Duration{Seconds: 1, Nanos: -5}},
			paths:      []string{"limits.timestamp_past_window"},
			wantFields: []string{"tenant.limits.timestamp_past_window"},
		},
		{
			name:       "invalid fields outside the mask are not judged",
			limits:     &adminv1.TenantLimits{EventsPerSecond: ptr(-1.0), KafkaShards: ptr(int32(0))},
			paths:      []string{"limits.kafka_shards"},
			wantFields: []string{"tenant.limits.kafka_shards"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("tenant-%d", i)
			createTenant(t, e, id, "")
			before, err := updateLimits(t, e, id, &adminv1.TenantLimits{MaxProperties: ptr(int32(2))}, "limits")
			require.NoError(t, err)

			_, err = updateLimits(t, e, id, tt.limits, tt.paths...)
			got := violations(t, err)
			require.ElementsMatch(t, tt.wantFields, keys(got), "%v", err)
			for _, f := range tt.wantFields {
				require.Contains(t, err.Error(), f+": ", "the message names every field too")
			}

			read, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
			require.NoError(t, err)
			require.Equal(t, before.String(), read.GetTenant().String(), "a refused update changes nothing")
		})
	}
}

// The retentions are checked against each other and against the past window,
// whichever of them the request sets and whichever are stored or default.
func TestUpdateTenantRetentionLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const day = 24 * time.Hour
	days := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * day) }

	tests := []struct {
		name   string
		stored *adminv1.TenantLimits // overrides before the update
		limits *adminv1.TenantLimits
		paths  []string
		want   *adminv1.TenantLimits // when accepted
		// wantField is the one field an INVALID_ARGUMENT names, and
		// wantMessage part of its description.
		wantField, wantMessage string
	}{
		{
			name:   "both retentions",
			limits: &adminv1.TenantLimits{RawRetention: days(30), RollupRetention: days(3650)},
			paths:  []string{"limits.raw_retention", "limits.rollup_retention"},
			want:   &adminv1.TenantLimits{RawRetention: days(30), RollupRetention: days(3650)},
		},
		{
			name:   "raw retention just covers the default past window",
			limits: &adminv1.TenantLimits{RawRetention: days(8)},
			paths:  []string{"limits.raw_retention"},
			want:   &adminv1.TenantLimits{RawRetention: days(8)},
		},
		{
			name:        "raw retention shorter than the default past window and a day",
			limits:      &adminv1.TenantLimits{RawRetention: durationpb.New(8*day - time.Second)},
			paths:       []string{"limits.raw_retention"},
			wantField:   "tenant.limits.raw_retention",
			wantMessage: "raw retention must be at least the timestamp past window (168h0m0s) + 24h0m0s",
		},
		{
			name:        "raw retention of a day at most",
			limits:      &adminv1.TenantLimits{RawRetention: days(1)},
			paths:       []string{"limits.raw_retention"},
			wantField:   "tenant.limits.raw_retention",
			wantMessage: "greater than 86400s",
		},
		{
			name:        "raw retention over ten years",
			limits:      &adminv1.TenantLimits{RawRetention: durationpb.New(tenancy.MaxRawRetention + time.Second)},
			paths:       []string{"limits.raw_retention"},
			wantField:   "tenant.limits.raw_retention",
			wantMessage: "less than or equal to 315576000s",
		},
		{
			name:        "rollup retention over twenty years",
			limits:      &adminv1.TenantLimits{RollupRetention: durationpb.New(tenancy.MaxRollupRetention + time.Second)},
			paths:       []string{"limits.rollup_retention"},
			wantField:   "tenant.limits.rollup_retention",
			wantMessage: "less than or equal to 631152000s",
		},
		{
			name:        "rollup retention shorter than the default raw retention",
			limits:      &adminv1.TenantLimits{RollupRetention: days(30)},
			paths:       []string{"limits.rollup_retention"},
			wantField:   "tenant.limits.rollup_retention",
			wantMessage: "rollup retention must be at least the raw retention (2160h0m0s)",
		},
		{
			name:        "rollup retention shorter than the raw retention of the same request",
			limits:      &adminv1.TenantLimits{RawRetention: days(200), RollupRetention: days(100)},
			paths:       []string{"limits"},
			wantField:   "tenant.limits",
			wantMessage: "rollup_retention must be at least raw_retention",
		},
		{
			name:        "raw retention shorter than the past window of the same request",
			limits:      &adminv1.TenantLimits{TimestampPastWindow: days(30), RawRetention: days(30)},
			paths:       []string{"limits.timestamp_past_window", "limits.raw_retention"},
			wantField:   "tenant.limits",
			wantMessage: "raw_retention must be at least timestamp_past_window + 24h",
		},
		{
			name:        "raw retention shorter than the stored past window",
			stored:      &adminv1.TenantLimits{TimestampPastWindow: days(60)},
			limits:      &adminv1.TenantLimits{RawRetention: days(30)},
			paths:       []string{"limits.raw_retention"},
			wantField:   "tenant.limits",
			wantMessage: "raw retention must be at least the timestamp past window (1440h0m0s)",
		},
		{
			name:        "a longer past window needs a longer raw retention",
			stored:      &adminv1.TenantLimits{RawRetention: days(10)},
			limits:      &adminv1.TenantLimits{TimestampPastWindow: days(10)},
			paths:       []string{"limits.timestamp_past_window"},
			wantField:   "tenant.limits",
			wantMessage: "raw retention must be at least",
		},
		{
			name:        "removing the rollup override leaves a raw retention beyond the default rollup retention",
			stored:      &adminv1.TenantLimits{RawRetention: days(1000), RollupRetention: days(2000)},
			limits:      &adminv1.TenantLimits{},
			paths:       []string{"limits.rollup_retention"},
			wantField:   "tenant.limits.raw_retention",
			wantMessage: "rollup retention must be at least the raw retention (24000h0m0s)",
		},
		{
			name:   "raising both past the defaults in one request",
			stored: &adminv1.TenantLimits{EventsBurst: ptr(int64(7))},
			limits: &adminv1.TenantLimits{RawRetention: days(1000), RollupRetention: days(2000)},
			paths:  []string{"limits.raw_retention", "limits.rollup_retention"},
			want:   &adminv1.TenantLimits{EventsBurst: ptr(int64(7)), RawRetention: days(1000), RollupRetention: days(2000)},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("tenant-%d", i)
			createTenant(t, e, id, "")
			before, err := updateLimits(t, e, id, tt.stored, "limits")
			require.NoError(t, err)

			got, err := updateLimits(t, e, id, tt.limits, tt.paths...)
			if tt.wantField == "" {
				require.NoError(t, err)
				requireLimits(t, e, id, got, tt.want)
				return
			}
			v := violations(t, err)
			require.Equal(t, []string{tt.wantField}, keys(v), "%v", err)
			require.Contains(t, v[tt.wantField], tt.wantMessage)
			read, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
			require.NoError(t, err)
			require.Equal(t, before.String(), read.GetTenant().String(), "a refused update changes nothing")
		})
	}
}

// Overrides already stored that break tenancy.Limits.Validate (written by
// hand, or under older rules) are named when an update would keep them: the
// effective limits are what is checked, not just the request.
func TestUpdateTenantChecksEffectiveLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	_, err := e.db.UpdateTenant(t.Context(), "acme", postgres.TenantUpdate{Limits: &tenancy.LimitOverrides{
		MaxEventBytes: ptr(10),  // below 256
		KafkaShards:   ptr(999), // above 256
		EventsBurst:   ptr(int64(5)),
	}})
	require.NoError(t, err)

	_, err = updateLimits(t, e, "acme", &adminv1.TenantLimits{MaxProperties: ptr(int32(4))}, "limits.max_properties")
	got := violations(t, err)
	require.ElementsMatch(t, []string{"tenant.limits.max_event_bytes", "tenant.limits.kafka_shards"}, keys(got))
	require.Equal(t, "max event bytes must be 256-460800, got 10", got["tenant.limits.max_event_bytes"])

	// Updating something other than the limits still works; so does
	// removing the bad overrides.
	_, err = e.svc.UpdateTenant(t.Context(), &adminv1.UpdateTenantRequest{
		Tenant:     &adminv1.Tenant{TenantId: "acme", DisplayName: "Acme"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	})
	require.NoError(t, err)
	fixed, err := updateLimits(t, e, "acme", &adminv1.TenantLimits{KafkaShards: ptr(int32(8))},
		"limits.max_event_bytes", "limits.kafka_shards")
	require.NoError(t, err)
	requireLimits(t, e, "acme", fixed, &adminv1.TenantLimits{EventsBurst: ptr(int64(5)), KafkaShards: ptr(int32(8))})
	require.Contains(t, e.logs.String(), `"limits_changed":["max_event_bytes","kafka_shards"]`,
		"the audit log names the changed limits")
}

// Two operators change different limits of one tenant at the same time, many
// times over: each keeps the other's change.
func TestUpdateTenantConcurrentLimitFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")

	const rounds = 25
	errs := make(chan error, 2*rounds)
	var wg sync.WaitGroup
	for i := range rounds {
		wg.Go(func() {
			_, err := updateLimits(t, e, "acme", &adminv1.TenantLimits{MaxBatchEvents: ptr(int32(100 + i))}, "limits.max_batch_events")
			errs <- err
		})
		wg.Go(func() {
			_, err := updateLimits(t, e, "acme", &adminv1.TenantLimits{EventsBurst: ptr(int64(1000 + i))}, "limits.events_burst")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: "acme"})
	require.NoError(t, err)
	limits := got.GetTenant().GetLimits()
	require.NotNil(t, limits.MaxBatchEvents)
	require.NotNil(t, limits.EventsBurst)
	require.Nil(t, limits.KafkaShards)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func nan() float64 { return math.NaN() }

func inf() float64 { return math.Inf(1) }
