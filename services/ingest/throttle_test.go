package ingest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/tenancy"
)

const (
	rateLimited    = ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED
	quotaExhausted = ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED
)

// fakeAdmitter admits a fixed number of requests and events (negative:
// unlimited), counts a monthly quota, and records the admissions asked.
type fakeAdmitter struct {
	mu       sync.Mutex
	requests int
	events   int
	used     int64
	refunded int
	asked    []ratelimit.Admission
}

func unlimited() *fakeAdmitter { return &fakeAdmitter{requests: -1, events: -1} }

func (f *fakeAdmitter) Admit(_ context.Context, _ tenancy.ID, now time.Time, a ratelimit.Admission) (ratelimit.Admitted, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, a)
	start, end := tenancy.MonthPeriod(now)
	out := ratelimit.Admitted{
		Request: ratelimit.Result{Limit: a.Requests},
		Events:  ratelimit.Result{Limit: a.Events, ResetAfter: 2 * time.Second},
		Quota:   ratelimit.QuotaResult{PeriodStart: start, PeriodEnd: end},
	}
	if f.requests == 0 {
		out.Request.RetryAfter = 400 * time.Millisecond
		return out, nil
	}
	if f.requests > 0 {
		f.requests--
	}
	out.Request.Allowed = 1
	fit := a.N
	if f.events >= 0 {
		fit = min(a.N, f.events)
	}
	granted := fit
	if a.QuotaHard > 0 {
		granted = int(max(0, min(int64(fit), a.QuotaHard-f.used)))
	}
	if f.events >= 0 {
		f.events -= granted
		out.Events.Remaining = int64(f.events)
	}
	f.used += int64(granted)
	out.Events.Allowed = fit
	if fit < a.N {
		out.Events.RetryAfter = 250 * time.Millisecond
	}
	out.Quota.Granted, out.Quota.Used = granted, f.used
	return out, nil
}

func (f *fakeAdmitter) Refund(_ context.Context, _ tenancy.ID, _ time.Time, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used -= int64(n)
	f.refunded += n
	return nil
}

func limitedEnv(t *testing.T, a *fakeAdmitter, edit func(*tenancy.Limits)) *env {
	return newEnv(t, func(c *ingest.Config) {
		withLimits(edit)(c)
		c.Admitter, c.Quota = a, a
	})
}

func TestIngestThrottlesEventsOverTheRate(t *testing.T) {
	t.Parallel()
	lim := &fakeAdmitter{requests: -1, events: 3}
	e := limitedEnv(t, lim, func(l *tenancy.Limits) { l.EventsPerSecond, l.EventsBurst = 100, 3 })
	events := validEvents("r", 6)
	events[1].Type = "" // invalid: rejected for itself, never throttled
	resp, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
	require.NoError(t, err)
	require.EqualValues(t, 3, resp.GetAccepted())
	rej := resp.GetRejected()
	require.Len(t, rej, 3)
	require.Equal(t, invalidType, rej[0].GetReason())
	require.EqualValues(t, 1, rej[0].GetIndex())
	require.Nil(t, rej[0].GetRetryAfter())
	// Events 0, 2 and 3 are admitted in order; 4 and 5 are throttled, the
	// second told to wait one event interval (10ms at 100/s) longer.
	for i, r := range rej[1:] {
		require.Equal(t, rateLimited, r.GetReason())
		require.EqualValues(t, 4+i, r.GetIndex())
		require.Contains(t, r.GetMessage(), "100 events per second with a burst of 3")
		require.Equal(t, 250*time.Millisecond+time.Duration(i)*10*time.Millisecond, r.GetRetryAfter().AsDuration())
	}
	got := written(t, e.kafka, "acme")
	require.Len(t, got, 3)
	require.Contains(t, got, "r-3")
	require.NotContains(t, got, "r-4")
	require.Equal(t, 2.0, counter(t, e.reg, "abacus_ingest_events_total", "rate_limited"))
	require.Equal(t, ratelimit.Limit{Rate: 100, Burst: 3}, lim.asked[0].Events)
	require.Equal(t, 5, lim.asked[0].N, "only the valid events ask to be admitted")
}

func TestIngestAllThrottledIsResourceExhausted(t *testing.T) {
	t.Parallel()
	lim := &fakeAdmitter{requests: -1, events: 0}
	e := limitedEnv(t, lim, func(l *tenancy.Limits) { l.EventsPerSecond, l.EventsBurst = 1000, 2000 })
	events := validEvents("x", 3)
	events[2].EventId = "" // invalid, listed in a BadRequest
	_, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
	var te *ingest.ThrottledError
	require.ErrorAs(t, err, &te)
	require.Equal(t, rateLimited, te.Reason())
	require.Equal(t, 250*time.Millisecond, te.RetryDelay())
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	require.Contains(t, st.Message(), "1000 events per second with a burst of 2000")
	var sawRetry, sawQuota, sawInfo, sawBad bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			sawRetry = true
			require.Equal(t, 250*time.Millisecond, d.GetRetryDelay().AsDuration())
		case *errdetails.QuotaFailure:
			sawQuota = true
			require.Len(t, d.GetViolations(), 1)
			require.Equal(t, "tenant:acme", d.GetViolations()[0].GetSubject())
			require.Equal(t, "events_per_second", d.GetViolations()[0].GetQuotaId())
			require.EqualValues(t, 1000, d.GetViolations()[0].GetQuotaValue())
		case *errdetails.ErrorInfo:
			sawInfo = true
			require.Equal(t, "RATE_LIMITED", d.GetReason())
			require.Equal(t, "events_per_second", d.GetMetadata()["limit"])
		case *errdetails.BadRequest:
			sawBad = true
			require.Len(t, d.GetFieldViolations(), 1)
			require.Equal(t, "events[2]", d.GetFieldViolations()[0].GetField())
		}
	}
	require.True(t, sawRetry && sawQuota && sawInfo && sawBad, "details: %v", st.Details())
	require.Zero(t, e.producer.calls.Load(), "nothing is written")
}

func TestIngestRequestRateRefusesTheWholeBatch(t *testing.T) {
	t.Parallel()
	lim := &fakeAdmitter{requests: 1, events: -1}
	e := limitedEnv(t, lim, func(l *tenancy.Limits) { l.RequestsPerSecond = 2.5 })
	ctx := tenantCtx(t.Context(), "acme")
	_, err := e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("a", 2)})
	require.NoError(t, err)
	_, err = e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("b", 2)})
	var te *ingest.ThrottledError
	require.ErrorAs(t, err, &te)
	require.Contains(t, te.Error(), "2.5 requests per second")
	require.Len(t, te.Rejected, 2)
	for _, r := range te.Rejected {
		require.Equal(t, rateLimited, r.GetReason())
		require.NotNil(t, r.GetRetryAfter())
	}
	require.Equal(t, ratelimit.Limit{Rate: 2.5, Burst: 3}, lim.asked[1].Requests)
	require.EqualValues(t, 1, e.producer.calls.Load())
}

func TestIngestQuotaExhaustedIsNamed(t *testing.T) {
	t.Parallel()
	e := limitedEnv(t, unlimited(), func(l *tenancy.Limits) { l.MonthlyEventQuota = 5 })
	ctx := tenantCtx(t.Context(), "acme")
	resp, err := e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("q", 7)})
	require.NoError(t, err)
	require.EqualValues(t, 5, resp.GetAccepted())
	require.Len(t, resp.GetRejected(), 2)
	_, periodEnd := tenancy.MonthPeriod(now)
	for _, r := range resp.GetRejected() {
		require.Equal(t, quotaExhausted, r.GetReason())
		require.Contains(t, r.GetMessage(), "5 events per calendar month")
		require.Equal(t, periodEnd.Sub(now), r.GetRetryAfter().AsDuration())
	}

	_, err = e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("q2", 1)})
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	require.Contains(t, st.Message(), "monthly event quota exhausted")
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	require.NotNil(t, info)
	require.Equal(t, "QUOTA_EXHAUSTED", info.GetReason(), "quota exhaustion is told apart from rate limiting")
}

// failingProducer fails every write.
type failingProducer struct{}

func (failingProducer) ProduceEncoded(context.Context, tenancy.ID, time.Time, []eventlog.EncodedEvent) error {
	return errors.New("broker down")
}

func TestIngestRefundsTheQuotaOfAFailedWrite(t *testing.T) {
	t.Parallel()
	q := unlimited()
	l := tenancy.DefaultLimits()
	l.MonthlyEventQuota = 100
	svc, err := ingest.New(ingest.Config{Limits: fixedLimits{l}, Admitter: q, Quota: q, Now: func() time.Time { return now }}, failingProducer{}, nil, nil)
	require.NoError(t, err)
	_, err = svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: validEvents("f", 4)})
	require.ErrorIs(t, err, ingest.ErrUnavailable)
	require.Equal(t, 4, q.refunded)
	require.Zero(t, q.used)
}

func TestIngestStreamAnswersThrottledBatchesAndGoesOn(t *testing.T) {
	t.Parallel()
	lim := &fakeAdmitter{requests: -1, events: 4}
	e := newStreamEnv(t, "acme", func(c *ingest.Config) {
		withLimits(func(l *tenancy.Limits) { l.EventsPerSecond, l.EventsBurst = 10, 4 })(c)
		c.Admitter = lim
	})
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)
	for seq := range uint64(3) {
		require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: seq, Events: validEvents("s"+string(rune('a'+seq)), 2)}))
		resp, err := stream.Recv() // one at a time, so the order of admission is known
		require.NoError(t, err)
		require.Equal(t, seq, resp.GetSequence())
		if seq < 2 {
			require.EqualValues(t, 2, resp.GetAccepted())
			continue
		}
		require.Zero(t, resp.GetAccepted())
		require.Len(t, resp.GetRejected(), 2)
		for _, r := range resp.GetRejected() {
			require.Equal(t, rateLimited, r.GetReason())
			require.Positive(t, r.GetRetryAfter().AsDuration())
		}
	}
	require.NoError(t, stream.CloseSend())
	require.Empty(t, recvAll(t, stream))
}

func TestIngestNamesTheSizeLimitsBroken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(func(l *tenancy.Limits) { l.MaxProperties = 1 }))
	events := validEvents("p", 2)
	for _, ev := range events {
		ev.Properties = map[string]string{"a": "1", "b": "2"}
	}
	_, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		if q, ok := d.(*errdetails.QuotaFailure); ok {
			qf = q
		}
	}
	require.NotNil(t, qf, "details: %v", st.Details())
	require.Len(t, qf.GetViolations(), 1, "one violation per limit, not per event")
	require.Equal(t, "max_properties", qf.GetViolations()[0].GetQuotaId())
	require.EqualValues(t, 1, qf.GetViolations()[0].GetQuotaValue())
	require.Equal(t, "tenant:acme", qf.GetViolations()[0].GetSubject())
}
