package ingest

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// UnavailableRetryAfter is how long clients are told to wait before retrying
// when the event log is unavailable: RetryInfo on a failed Ingest, retry_after
// on REJECT_REASON_UNAVAILABLE verdicts of a stream.
const UnavailableRetryAfter = time.Second

// ErrUnavailable matches (errors.Is) the [UnavailableError] Ingest returns
// when the accepted events of a request could not be written durably.
var ErrUnavailable = errors.New("ingest: the event log is unavailable; no event of the request was accepted, retry the request with the same event_ids")

// UnavailableError is the error of an Ingest call whose accepted events could
// not be written durably: none of the request's events were accepted and the
// client should retry the whole request after RetryDelay. It matches both
// [ErrUnavailable] and [eventlog.ErrUnavailable] with errors.Is, so the
// error-mapping interceptor turns it into codes.Unavailable with a RetryInfo.
//
// It deliberately does not unwrap to Cause: whatever the producer's error
// wraps (a context deadline, a broker error), the request's outcome is
// "unavailable, retry", not a deadline or an internal error.
type UnavailableError struct {
	// Events is the number of valid events that were not written.
	Events int
	// Cause is the producer's error, for logs.
	Cause error
}

// Error describes the failure for the client and the logs.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (%d valid events not written: %v)", ErrUnavailable, e.Events, e.Cause)
}

// Is reports whether target is ErrUnavailable or eventlog.ErrUnavailable.
func (e *UnavailableError) Is(target error) bool {
	return target == ErrUnavailable || target == eventlog.ErrUnavailable
}

// RetryDelay is how long the client should wait before retrying, for the
// RetryInfo detail.
func (e *UnavailableError) RetryDelay() time.Duration { return UnavailableRetryAfter }

// maxListedRejections bounds how many rejected events an INVALID_ARGUMENT answer lists.
const maxListedRejections = 100

// NothingAcceptedError is the error of an Ingest call in which every event was rejected. It is
// a client error (INVALID_ARGUMENT, HTTP 400) rather than a response with accepted=0, so that
// clients that only look at the status learn that nothing was kept; the BadRequest detail lists
// each event as events[i] with its reason and message, and a QuotaFailure names the tenant's size
// limits (max_batch_events, max_event_bytes, max_properties) that events broke. When at least one
// event is accepted the
// call succeeds and lists the rejections in the response instead (partial success, as in OTLP).
type NothingAcceptedError struct {
	// Rejected holds the verdict of every event of the request.
	Rejected []*ingestv1.RejectedEvent
	// Tenant and Limits, when set, let the status name the tenant's size
	// limits that events broke in a QuotaFailure detail.
	Tenant tenancy.ID
	Limits tenancy.Limits
}

// Error lists the first rejections.
func (e *NothingAcceptedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid request: none of the %d events was accepted", len(e.Rejected))
	for i, r := range e.Rejected {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Rejected)-i)
			break
		}
		fmt.Fprintf(&b, "; events[%d]: %s", r.GetIndex(), r.GetMessage())
	}
	return b.String()
}

// GRPCStatus is the INVALID_ARGUMENT status with a BadRequest detail naming each event.
func (e *NothingAcceptedError) GRPCStatus() *status.Status {
	st := status.New(codes.InvalidArgument, e.Error())
	br := &errdetails.BadRequest{}
	for i, r := range e.Rejected {
		if i == maxListedRejections {
			break
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       fmt.Sprintf("events[%d]", r.GetIndex()),
			Description: r.GetMessage(),
			Reason:      r.GetReason().String(),
		})
	}
	details := []protoadapt.MessageV1{br}
	if qf := e.sizeLimits(); qf != nil {
		details = append(details, qf)
	}
	if ds, err := st.WithDetails(details...); err == nil {
		return ds
	}
	return st
}

// sizeLimits is a QuotaFailure naming each of the tenant's size limits that
// an event broke (batch size, event size, properties), or nil.
func (e *NothingAcceptedError) sizeLimits() *errdetails.QuotaFailure {
	if e.Tenant == "" {
		return nil
	}
	limits := map[ingestv1.RejectReason]struct {
		id    string
		value int
	}{
		ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE:     {"max_batch_events", e.Limits.MaxBatchEvents},
		ingestv1.RejectReason_REJECT_REASON_EVENT_TOO_LARGE:     {"max_event_bytes", e.Limits.MaxEventBytes},
		ingestv1.RejectReason_REJECT_REASON_TOO_MANY_PROPERTIES: {"max_properties", e.Limits.MaxProperties},
	}
	var qf errdetails.QuotaFailure
	seen := map[ingestv1.RejectReason]bool{}
	for _, r := range e.Rejected {
		l, ok := limits[r.GetReason()]
		if !ok || seen[r.GetReason()] {
			continue
		}
		seen[r.GetReason()] = true
		qf.Violations = append(qf.Violations, &errdetails.QuotaFailure_Violation{
			Subject:     "tenant:" + string(e.Tenant),
			Description: fmt.Sprintf("limit %s: %d", l.id, l.value),
			ApiService:  "abacus.ingest.v1.IngestService",
			QuotaId:     l.id,
			QuotaValue:  int64(l.value),
		})
	}
	if len(qf.Violations) == 0 {
		return nil
	}
	return &qf
}
