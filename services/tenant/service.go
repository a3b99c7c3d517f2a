package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// usageTimeout bounds one read of the usage counter, so that a hanging
// counter store turns into UNAVAILABLE instead of a request that never ends.
const usageTimeout = 2 * time.Second

// Limits gives the limits in force for a tenant. *tenancy.Overrides
// satisfies it.
type Limits interface {
	For(id tenancy.ID) tenancy.Limits
}

var _ Limits = (*tenancy.Overrides)(nil)

// Usage counts a tenant's accepted events. The ratelimit package's quota
// counter satisfies it.
type Usage interface {
	// MonthlyEvents returns the events accepted for tenant in the quota
	// period (calendar month, UTC) containing now.
	MonthlyEvents(ctx context.Context, tenant tenancy.ID, now time.Time) (int64, error)
}

// Service implements tenantv1.TenantServiceServer. It is safe for concurrent
// use and starts nothing.
type Service struct {
	tenantv1.UnimplementedTenantServiceServer

	limits Limits
	usage  Usage
	logger *slog.Logger
	now    func() time.Time
}

var _ tenantv1.TenantServiceServer = (*Service)(nil)

// New returns the tenant service. logger may be nil (no logs) and now may be
// nil (time.Now). It registers no metrics of its own: the server's per-RPC
// metrics cover it.
func New(limits Limits, usage Usage, logger *slog.Logger, now func() time.Time) (*Service, error) {
	var errs []error
	if limits == nil {
		errs = append(errs, errors.New("tenant: limits are required"))
	}
	if usage == nil {
		errs = append(errs, errors.New("tenant: usage is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{limits: limits, usage: usage, logger: logger, now: now}, nil
}

// GetLimits returns the limits in force for the calling tenant.
func (s *Service) GetLimits(ctx context.Context, _ *tenantv1.GetLimitsRequest) (*tenantv1.GetLimitsResponse, error) {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenant: get limits: %w", err)
	}
	return &tenantv1.GetLimitsResponse{
		TenantId: tenant.String(),
		Limits:   limitsToProto(s.limits.For(tenant)),
	}, nil
}

// GetUsage returns the calling tenant's usage in the current quota period.
func (s *Service) GetUsage(ctx context.Context, _ *tenantv1.GetUsageRequest) (*tenantv1.GetUsageResponse, error) {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenant: get usage: %w", err)
	}
	now := s.now()
	start, end := tenancy.MonthPeriod(now)
	limits := s.limits.For(tenant)

	readCtx, cancel := context.WithTimeout(ctx, usageTimeout)
	accepted, err := s.usage.MonthlyEvents(readCtx, tenant, now)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.logger.WarnContext(ctx, "reading tenant usage failed",
				slog.String("tenant_id", tenant.String()), slog.Any("error", err))
		}
		return nil, usageError(ctx)
	}
	// A counter never goes below zero; a negative reading would be a bug of
	// the counter, and must not turn into more remaining quota than granted.
	accepted = max(accepted, 0)

	var remaining int64
	if limits.MonthlyEventQuota > 0 {
		remaining = max(limits.MonthlyEventQuota-accepted, 0)
	}
	return &tenantv1.GetUsageResponse{
		TenantId:              tenant.String(),
		PeriodStart:           timestamppb.New(start),
		PeriodEnd:             timestamppb.New(end),
		EventsAccepted:        accepted,
		MonthlyEventQuota:     limits.MonthlyEventQuota,
		QuotaRemaining:        remaining,
		MonthlyEventQuotaSoft: limits.MonthlyEventQuotaSoft,
		SoftThresholdExceeded: limits.MonthlyEventQuotaSoft > 0 && accepted >= limits.MonthlyEventQuotaSoft,
	}, nil
}

func limitsToProto(l tenancy.Limits) *tenantv1.Limits {
	return &tenantv1.Limits{
		EventsPerSecond:        l.EventsPerSecond,
		EventsBurst:            l.EventsBurst,
		RequestsPerSecond:      l.RequestsPerSecond,
		MaxBatchEvents:         toInt32(l.MaxBatchEvents),
		MaxEventBytes:          toInt32(l.MaxEventBytes),
		MaxProperties:          toInt32(l.MaxProperties),
		TimestampPastWindow:    durationpb.New(l.TimestampPastWindow),
		TimestampFutureWindow:  durationpb.New(l.TimestampFutureWindow),
		MonthlyEventQuota:      l.MonthlyEventQuota,
		MonthlyEventQuotaSoft:  l.MonthlyEventQuotaSoft,
		QueryRequestsPerSecond: l.QueryRequestsPerSecond,
		RawRetention:           durationpb.New(l.RawRetention),
		RollupRetention:        durationpb.New(l.RollupRetention),
	}
}

// toInt32 saturates instead of wrapping. Validated limits are far below the
// bound; this only keeps a bad value from reading as a negative one.
func toInt32(v int) int32 {
	return int32(min(max(v, math.MinInt32), math.MaxInt32))
}
