package ingest

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/tenancy"
)

// The limits a throttle names, as in TenantLimits (admin.proto) and in the
// QuotaFailure and ErrorInfo details.
const (
	limitRequestsPerSecond = "requests_per_second"
	limitEventsPerSecond   = "events_per_second"
	limitMonthlyQuota      = "monthly_event_quota"
)

// ErrorInfo reasons of a RESOURCE_EXHAUSTED answer, in the domain errorDomain.
const (
	errorDomain        = "abacus.dev"
	infoRateLimited    = "RATE_LIMITED"
	infoQuotaExhausted = "QUOTA_EXHAUSTED"
)

// requestLimit is the GCRA limit of ingest requests (and stream batches): the
// tenant's rate with a burst of one second's worth.
func requestLimit(l *tenancy.Limits) ratelimit.Limit {
	return ratelimit.Limit{Rate: l.RequestsPerSecond, Burst: max(1, int64(math.Ceil(l.RequestsPerSecond)))}
}

// eventLimit is the GCRA limit of accepted events.
func eventLimit(l *tenancy.Limits) ratelimit.Limit {
	return ratelimit.Limit{Rate: l.EventsPerSecond, Burst: l.EventsBurst}
}

// throttle says why some events of a batch were not admitted although valid.
// The first throttle of a batch is the one its answer names.
type throttle struct {
	reason      ingestv1.RejectReason // RATE_LIMITED or QUOTA_EXHAUSTED
	limit       string                // limitRequestsPerSecond, ...
	value       int64                 // the limit's value, rounded
	description string                // the limit in words, for messages
	retryAfter  time.Duration         // when the first throttled event may be sent again
}

// admission is what the tenant's limits decided about one batch.
type admission struct {
	// limits are the tenant's limits the batch was judged under.
	limits tenancy.Limits
	// events is the state of the tenant's events bucket after the batch, for
	// the RateLimit-* headers; nil when no rate limiter is configured or the
	// batch did not reach it.
	events *ratelimit.Result
	// throttled is non-nil when valid events were throttled.
	throttled *throttle
	// reserved events were counted against the quota of the period starting
	// at period; they are refunded when the write fails.
	reserved int
	period   time.Time
}

// admit applies the tenant's request rate, event rate and monthly quota to
// v's accepted events in one decision, moving those that are not admitted
// into v.rejected with a retry delay. Events are admitted in batch order, so
// a client that retries the throttled ones after their delay keeps its
// order. A batch over the request rate is refused whole: its valid events
// are throttled, its invalid ones keep their own verdicts.
func (s *Service) admit(ctx context.Context, tenant tenancy.ID, lim *tenancy.Limits, now time.Time, v *verdicts, adm *admission) error {
	if s.cfg.Admitter == nil {
		return nil
	}
	n := len(v.accepted)
	res, err := s.cfg.Admitter.Admit(ctx, tenant, now, ratelimit.Admission{
		Requests:  requestLimit(lim),
		Events:    eventLimit(lim),
		N:         n,
		QuotaHard: lim.MonthlyEventQuota,
	})
	if err != nil {
		return fmt.Errorf("ingest: admit: %w", err)
	}
	if res.Request.Allowed == 0 {
		t := &throttle{
			reason:      ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED,
			limit:       limitRequestsPerSecond,
			value:       int64(math.Round(lim.RequestsPerSecond)),
			description: fmt.Sprintf("%s requests per second", formatRate(lim.RequestsPerSecond)),
			retryAfter:  max(res.Request.RetryAfter, time.Millisecond),
		}
		adm.throttled = t
		p := &problem{
			reason:     t.reason,
			message:    fmt.Sprintf("rate limited: the tenant may send %s; retry the batch after the delay given", t.description),
			retryAfter: t.retryAfter,
		}
		v.throttle(0, func(int) *problem { return p })
		return nil
	}
	adm.events = &res.Events
	adm.reserved, adm.period = res.Quota.Granted, res.Quota.PeriodStart
	fit, granted := min(res.Events.Allowed, n), min(res.Quota.Granted, res.Events.Allowed, n)

	if fit < n {
		t := &throttle{
			reason: ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED,
			limit:  limitEventsPerSecond,
			value:  int64(math.Round(lim.EventsPerSecond)),
			description: fmt.Sprintf("%s events per second with a burst of %d",
				formatRate(lim.EventsPerSecond), lim.EventsBurst),
			retryAfter: max(res.Events.RetryAfter, time.Millisecond),
		}
		adm.throttled = t
		// The j-th throttled event fits j/rate after the first one: each is
		// told when it would be admitted if the client waits, so that a
		// retrying client spreads its retries instead of sending them all at
		// once to be throttled again.
		perEvent := time.Duration(float64(time.Second) / lim.EventsPerSecond)
		msg := fmt.Sprintf("rate limited: the tenant may send %s; retry this event after the delay given", t.description)
		v.throttle(fit, func(j int) *problem {
			return &problem{reason: t.reason, message: msg, retryAfter: t.retryAfter + time.Duration(j)*perEvent}
		})
	}
	if granted < fit {
		t := &throttle{
			reason:      ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED,
			limit:       limitMonthlyQuota,
			value:       lim.MonthlyEventQuota,
			description: fmt.Sprintf("%d events per calendar month (UTC)", lim.MonthlyEventQuota),
			retryAfter:  max(res.Quota.PeriodEnd.Sub(now), time.Second),
		}
		// Nothing more can be sent this month: the quota is what to name.
		adm.throttled = t
		msg := fmt.Sprintf("monthly event quota exhausted: the tenant may send %s; the quota resets at %s",
			t.description, res.Quota.PeriodEnd.UTC().Format(time.RFC3339))
		v.throttle(granted, func(int) *problem {
			return &problem{reason: t.reason, message: msg, retryAfter: t.retryAfter}
		})
	}
	return nil
}

// throttle keeps the first keep accepted events and rejects the others with
// the problem p(j) for the j-th of them (from 0), keeping v.rejected ordered
// by index.
func (v *verdicts) throttle(keep int, p func(j int) *problem) {
	if keep >= len(v.accepted) {
		return
	}
	out := make([]*ingestv1.RejectedEvent, 0, len(v.rejected)+len(v.accepted)-keep)
	r := v.rejected
	for j, a := range v.accepted[keep:] {
		for len(r) > 0 && r[0].GetIndex() < a.index {
			out, r = append(out, r[0]), r[1:]
		}
		out = append(out, rejectedEvent(int(a.index), string(a.id), p(j)))
	}
	v.rejected = append(out, r...)
	v.accepted = v.accepted[:keep]
}

// ThrottledError is the error of an Ingest call in which no event was
// accepted and at least one was throttled: RESOURCE_EXHAUSTED (HTTP 429)
// with RetryInfo, QuotaFailure naming the limit, ErrorInfo whose reason tells
// a rate limit (RATE_LIMITED) from an exhausted quota (QUOTA_EXHAUSTED), and
// a BadRequest for the events that were invalid as well.
type ThrottledError struct {
	// Tenant is the throttled tenant.
	Tenant tenancy.ID
	// Rejected holds the verdict of every event of the request.
	Rejected []*ingestv1.RejectedEvent

	throttle *throttle
}

// RetryDelay is how long the client should wait before sending again.
func (e *ThrottledError) RetryDelay() time.Duration { return e.throttle.retryAfter }

// Reason is REJECT_REASON_RATE_LIMITED or REJECT_REASON_QUOTA_EXHAUSTED.
func (e *ThrottledError) Reason() ingestv1.RejectReason { return e.throttle.reason }

// Error names the limit and the delay.
func (e *ThrottledError) Error() string {
	t := e.throttle
	if t.reason == ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED {
		return fmt.Sprintf("monthly event quota exhausted: tenant %s may send %s; no event of the request was accepted; retry after %s",
			e.Tenant, t.description, retryText(t.retryAfter))
	}
	return fmt.Sprintf("rate limited: tenant %s may send %s; no event of the request was accepted; retry after %s",
		e.Tenant, t.description, retryText(t.retryAfter))
}

// GRPCStatus is the RESOURCE_EXHAUSTED status with its details.
func (e *ThrottledError) GRPCStatus() *status.Status {
	t := e.throttle
	info := infoRateLimited
	if t.reason == ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED {
		info = infoQuotaExhausted
	}
	st := status.New(codes.ResourceExhausted, e.Error())
	details := []protoadapt.MessageV1{
		&errdetails.RetryInfo{RetryDelay: durationpb.New(t.retryAfter)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "tenant:" + string(e.Tenant),
			Description: "limit " + t.limit + ": " + t.description,
			ApiService:  "abacus.ingest.v1.IngestService",
			QuotaId:     t.limit,
			QuotaValue:  t.value,
		}}},
		&errdetails.ErrorInfo{Reason: info, Domain: errorDomain, Metadata: map[string]string{
			"tenant_id":   string(e.Tenant),
			"limit":       t.limit,
			"limit_value": strconv.FormatInt(t.value, 10),
			"retry_after": t.retryAfter.String(),
		}},
	}
	var br errdetails.BadRequest
	for _, r := range e.Rejected {
		if len(br.FieldViolations) == maxListedRejections {
			break
		}
		if !isThrottle(r.GetReason()) {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field:       fmt.Sprintf("events[%d]", r.GetIndex()),
				Description: r.GetMessage(),
				Reason:      r.GetReason().String(),
			})
		}
	}
	if len(br.FieldViolations) > 0 {
		details = append(details, &br)
	}
	if ds, err := st.WithDetails(details...); err == nil {
		return ds
	}
	return st
}

func isThrottle(r ingestv1.RejectReason) bool {
	return r == ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED || r == ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED
}

// rateLimitHeaders is the response metadata the REST gateway turns into the
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers
// (draft-ietf-httpapi-ratelimit-headers): the capacity of the tenant's events
// bucket (its burst), the events that could be sent right now, and the
// seconds until the bucket is full again.
func rateLimitHeaders(res *ratelimit.Result) metadata.MD {
	return metadata.Pairs(
		"ratelimit-limit", strconv.FormatInt(res.Limit.Burst, 10),
		"ratelimit-remaining", strconv.FormatInt(max(res.Remaining, 0), 10),
		"ratelimit-reset", strconv.FormatInt(ceilSeconds(res.ResetAfter), 10),
	)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// retryText formats a retry delay for a message.
func retryText(d time.Duration) string {
	if d >= time.Hour {
		return humanDuration(d.Round(time.Minute))
	}
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// formatRate prints a rate without a useless fraction: 1000, 0.5, 12.25.
func formatRate(r float64) string {
	s := strconv.FormatFloat(r, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
