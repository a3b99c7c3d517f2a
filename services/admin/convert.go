package admin

import (
	"errors"
	"math"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/internal/rpcerror"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Key scopes as the store spells them; authentication maps the same strings
// to auth.Scope.
const (
	scopeIngest = "ingest"
	scopeQuery  = "query"
)

// storeState returns the store's spelling of a tenant state, and false for
// UNSPECIFIED and values the contract does not define.
func storeState(s adminv1.TenantState) (string, bool) {
	switch s {
	case adminv1.TenantState_TENANT_STATE_ACTIVE:
		return postgres.TenantActive, true
	case adminv1.TenantState_TENANT_STATE_SUSPENDED:
		return postgres.TenantSuspended, true
	default:
		return "", false
	}
}

// protoState is the inverse of storeState. A state this version does not know
// reads as UNSPECIFIED rather than failing the whole response.
func protoState(s string) adminv1.TenantState {
	switch s {
	case postgres.TenantActive:
		return adminv1.TenantState_TENANT_STATE_ACTIVE
	case postgres.TenantSuspended:
		return adminv1.TenantState_TENANT_STATE_SUSPENDED
	default:
		return adminv1.TenantState_TENANT_STATE_UNSPECIFIED
	}
}

// storeScope returns the store's spelling of a scope, and false for
// UNSPECIFIED and values the contract does not define.
func storeScope(s adminv1.Scope) (string, bool) {
	switch s {
	case adminv1.Scope_SCOPE_INGEST:
		return scopeIngest, true
	case adminv1.Scope_SCOPE_QUERY:
		return scopeQuery, true
	default:
		return "", false
	}
}

// protoScopes is the inverse of storeScope for a key's scopes. Scopes this
// version does not know (written by a newer one) are left out: the response
// never claims a permission it cannot name.
func protoScopes(scopes []string) []adminv1.Scope {
	out := make([]adminv1.Scope, 0, len(scopes))
	for _, s := range scopes {
		switch s {
		case scopeIngest:
			out = append(out, adminv1.Scope_SCOPE_INGEST)
		case scopeQuery:
			out = append(out, adminv1.Scope_SCOPE_QUERY)
		}
	}
	return out
}

// protoTenant converts a stored tenant. limits carries the stored overrides
// only (never the defaults), and is present, possibly empty, on every tenant.
func protoTenant(t postgres.Tenant) *adminv1.Tenant {
	return &adminv1.Tenant{
		TenantId:    t.ID.String(),
		DisplayName: t.DisplayName,
		State:       protoState(t.State),
		CreateTime:  timestamppb.New(t.CreatedAt),
		UpdateTime:  timestamppb.New(t.UpdatedAt),
		Limits:      protoLimits(t.Limits),
	}
}

// protoAPIKey converts a stored key. It copies no secret and no hash: the
// store has no secret, and the hash is not part of the contract. The last use
// is reported to the minute, the precision the contract promises (uses are
// recorded at most once a minute per key).
func protoAPIKey(k postgres.APIKey) *adminv1.ApiKey {
	var lastUsed *time.Time
	if k.LastUsedAt != nil {
		t := k.LastUsedAt.Truncate(time.Minute)
		lastUsed = &t
	}
	return &adminv1.ApiKey{
		KeyId:        k.ID,
		TenantId:     k.Tenant.String(),
		DisplayName:  k.DisplayName,
		Scopes:       protoScopes(k.Scopes),
		CreateTime:   timestamppb.New(k.CreatedAt),
		ExpireTime:   optionalTimestamp(k.ExpiresAt),
		RevokeTime:   optionalTimestamp(k.RevokedAt),
		LastUsedTime: optionalTimestamp(lastUsed),
	}
}

// protoLimits converts stored overrides to the contract's TenantLimits: a
// field is set exactly when its limit is overridden.
func protoLimits(o tenancy.LimitOverrides) *adminv1.TenantLimits {
	return &adminv1.TenantLimits{
		EventsPerSecond:        clonePtr(o.EventsPerSecond),
		EventsBurst:            clonePtr(o.EventsBurst),
		RequestsPerSecond:      clonePtr(o.RequestsPerSecond),
		MaxBatchEvents:         narrow(o.MaxBatchEvents),
		MaxEventBytes:          narrow(o.MaxEventBytes),
		MaxProperties:          narrow(o.MaxProperties),
		TimestampPastWindow:    protoDuration(o.TimestampPastWindow),
		TimestampFutureWindow:  protoDuration(o.TimestampFutureWindow),
		MonthlyEventQuota:      clonePtr(o.MonthlyEventQuota),
		MonthlyEventQuotaSoft:  clonePtr(o.MonthlyEventQuotaSoft),
		QueryRequestsPerSecond: clonePtr(o.QueryRequestsPerSecond),
		KafkaShards:            narrow(o.KafkaShards),
		RawRetention:           protoDuration(o.RawRetention),
		RollupRetention:        protoDuration(o.RollupRetention),
	}
}

// overridesFromProto converts a TenantLimits message to overrides: a field
// that is set becomes an override, an unset one stays nil. It checks only
// what the conversion needs (durations that are valid and fit a
// time.Duration); the limits' own rules are checked by the caller. field
// prefixes the names of the returned violations ("tenant.limits").
func overridesFromProto(l *adminv1.TenantLimits, field string) (tenancy.LimitOverrides, []*errdetails.BadRequest_FieldViolation) {
	if l == nil {
		return tenancy.LimitOverrides{}, nil
	}
	var bad []*errdetails.BadRequest_FieldViolation
	duration := func(d *durationpb.Duration, name string) *time.Duration {
		v, err := fromProtoDuration(d)
		if err != nil {
			bad = append(bad, rpcerror.Field(field+"."+name, err.Error()))
		}
		return v
	}
	o := tenancy.LimitOverrides{
		EventsPerSecond:        clonePtr(l.EventsPerSecond),
		EventsBurst:            clonePtr(l.EventsBurst),
		RequestsPerSecond:      clonePtr(l.RequestsPerSecond),
		MaxBatchEvents:         widen(l.MaxBatchEvents),
		MaxEventBytes:          widen(l.MaxEventBytes),
		MaxProperties:          widen(l.MaxProperties),
		TimestampPastWindow:    duration(l.GetTimestampPastWindow(), "timestamp_past_window"),
		TimestampFutureWindow:  duration(l.GetTimestampFutureWindow(), "timestamp_future_window"),
		MonthlyEventQuota:      clonePtr(l.MonthlyEventQuota),
		MonthlyEventQuotaSoft:  clonePtr(l.MonthlyEventQuotaSoft),
		QueryRequestsPerSecond: clonePtr(l.QueryRequestsPerSecond),
		KafkaShards:            widen(l.KafkaShards),
		RawRetention:           duration(l.GetRawRetention(), "raw_retention"),
		RollupRetention:        duration(l.GetRollupRetention(), "rollup_retention"),
	}
	return o, bad
}

// copyLimit sets dst's override of the limit named by the TenantLimits field
// name to src's (removing it when src has none), and reports whether name is
// a TenantLimits field.
func copyLimit(dst *tenancy.LimitOverrides, src tenancy.LimitOverrides, name string) bool {
	switch name {
	case "events_per_second":
		dst.EventsPerSecond = src.EventsPerSecond
	case "events_burst":
		dst.EventsBurst = src.EventsBurst
	case "requests_per_second":
		dst.RequestsPerSecond = src.RequestsPerSecond
	case "max_batch_events":
		dst.MaxBatchEvents = src.MaxBatchEvents
	case "max_event_bytes":
		dst.MaxEventBytes = src.MaxEventBytes
	case "max_properties":
		dst.MaxProperties = src.MaxProperties
	case "timestamp_past_window":
		dst.TimestampPastWindow = src.TimestampPastWindow
	case "timestamp_future_window":
		dst.TimestampFutureWindow = src.TimestampFutureWindow
	case "monthly_event_quota":
		dst.MonthlyEventQuota = src.MonthlyEventQuota
	case "monthly_event_quota_soft":
		dst.MonthlyEventQuotaSoft = src.MonthlyEventQuotaSoft
	case "query_requests_per_second":
		dst.QueryRequestsPerSecond = src.QueryRequestsPerSecond
	case "kafka_shards":
		dst.KafkaShards = src.KafkaShards
	case "raw_retention":
		dst.RawRetention = src.RawRetention
	case "rollup_retention":
		dst.RollupRetention = src.RollupRetention
	default:
		return false
	}
	return true
}

// limitFields returns the fields of TenantLimits in declaration order.
func limitFields() protoreflect.FieldDescriptors {
	return (*adminv1.TenantLimits)(nil).ProtoReflect().Descriptor().Fields()
}

// protoDuration converts an optional duration; nil stays absent.
func protoDuration(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(*d)
}

// fromProtoDuration converts an optional duration, refusing one that is not
// valid or does not fit a time.Duration (about 292 years) rather than
// saturating it.
func fromProtoDuration(d *durationpb.Duration) (*time.Duration, error) {
	if d == nil {
		return nil, nil
	}
	if err := d.CheckValid(); err != nil {
		return nil, errors.New("not a valid duration")
	}
	v := d.AsDuration()
	if back := durationpb.New(v); back.GetSeconds() != d.GetSeconds() || back.GetNanos() != d.GetNanos() {
		return nil, errors.New("duration out of range")
	}
	return &v, nil
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// widen converts an optional int32 to an int.
func widen(p *int32) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// narrow converts an optional int to an int32, saturating values outside its
// range (which no valid limit has).
func narrow(p *int) *int32 {
	if p == nil {
		return nil
	}
	v := int32(max(math.MinInt32, min(math.MaxInt32, *p)))
	return &v
}

// optionalTimestamp converts a nullable time; nil stays absent.
func optionalTimestamp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
