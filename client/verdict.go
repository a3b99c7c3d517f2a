package client

import (
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// Verdict is the final outcome of one event. Every event Send or TrySend took
// gets exactly one.
type Verdict struct {
	// EventID is the event's event_id (assigned by Send when it was empty).
	EventID string
	// Accepted reports that the server wrote the event durably; it is
	// counted exactly once.
	Accepted bool
	// Reason is why the event was not accepted: the server's reason for a
	// rejection, or the last retryable reason when the client gave up on
	// it. REJECT_REASON_UNSPECIFIED when accepted, and when the event was
	// given up after stream failures or at Close.
	Reason ingestv1.RejectReason
	// Message is the server's explanation of the rejection, if any.
	Message string
	// Attempts is how many times the event was sent (0 if it never was).
	Attempts int
	// Err is non-nil when the client gave up on the event rather than the
	// server deciding: retries exhausted ([ErrRetriesExhausted], wrapping
	// the last cause), a stream error that retrying cannot fix (a gRPC
	// status error such as UNAUTHENTICATED), or Close's context ending
	// first ([ErrAbandoned]).
	Err error
}

// Stats counts what a Client did since it was created.
type Stats struct {
	// Accepted, Rejected and GivenUp count final verdicts: accepted,
	// rejected by the server for good, and given up by the client
	// (Verdict.Err set).
	Accepted, Rejected, GivenUp int64
	// Retried counts retries scheduled: one per event per retry.
	Retried int64
	// Reconnects counts streams opened after the first.
	Reconnects int64
	// InFlight is the number of events in batches sent and not answered.
	InFlight int
	// Buffered is the number of events held: queued, in flight, awaiting a
	// retry or awaiting delivery of their verdict.
	Buffered int
}

// reconcile matches a response to a batch of n events: the result has one
// entry per event, nil for an accepted one. The server lists every event not
// accepted by its index; entries with an index out of range or seen before
// are ignored and counted in anomalies, as is an accepted count that does
// not match (the listed verdicts win).
func reconcile(n int, resp *ingestv1.IngestStreamResponse) (rejected []*ingestv1.RejectedEvent, anomalies int) {
	rejected = make([]*ingestv1.RejectedEvent, n)
	listed := 0
	for _, r := range resp.GetRejected() {
		i := int(r.GetIndex())
		if i < 0 || i >= n || rejected[i] != nil {
			anomalies++
			continue
		}
		rejected[i] = r
		listed++
	}
	if int64(resp.GetAccepted()) != int64(n-listed) {
		anomalies++
	}
	return rejected, anomalies
}

// retryDelay returns a verdict's retry_after, or 0 when it has none or an
// invalid one.
func retryDelay(d *durationpb.Duration) (time.Duration, bool) {
	if d == nil || d.CheckValid() != nil {
		return 0, false
	}
	return max(d.AsDuration(), 0), true
}

// verdictRetry decides whether a rejected event may be sent again and the
// least delay before that.
//
//   - RATE_LIMITED and UNAVAILABLE: retried, after retry_after if given.
//   - QUOTA_EXHAUSTED: retried only with a retry_after of at most
//     MaxQuotaRetryAfter (the reset is near); otherwise final.
//   - A retry_after above MaxQuotaRetryAfter makes any reason final: the
//     client does not hold events for hours.
//   - Every other reason is final: sending the same event again cannot
//     change the verdict. (BATCH_TOO_LARGE is handled by the caller.)
func verdictRetry(r *ingestv1.RejectedEvent) (retryable bool, delay time.Duration) {
	delay, given := retryDelay(r.GetRetryAfter())
	if delay > MaxQuotaRetryAfter {
		return false, 0
	}
	switch r.GetReason() {
	case ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE:
		return true, delay
	case ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED:
		return given, delay
	default:
		return false, 0
	}
}

// streamRetry decides whether the events in flight on a stream that ended
// with err may be sent again, and the least delay (a RetryInfo detail's).
// Transport failures, UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL,
// UNKNOWN, and CANCELED or DEADLINE_EXCEEDED that the client did not cause
// are retried: the server deduplicates by event_id, so sending an event again
// is always safe, and MaxRetries bounds the attempts. Other codes
// (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, UNIMPLEMENTED, ...)
// would fail again and are final.
func streamRetry(err error) (retryable bool, delay time.Duration) {
	if errors.Is(err, errResponseTimeout) || errors.Is(err, errStreamEnded) {
		return true, 0
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a status: a transport or local failure of the stream.
		return true, 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay, _ = retryDelay(ri.GetRetryDelay())
		}
	}
	if delay > MaxQuotaRetryAfter {
		return false, 0
	}
	switch st.Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown,
		codes.Canceled, codes.DeadlineExceeded:
		return true, delay
	default:
		return false, 0
	}
}

// backoff returns the delay before the n-th retry (n >= 1): uniformly random
// in [0, min(maxDelay, base·2^(n-1))].
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	ceiling := base
	for i := 1; i < n && ceiling < maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxDelay)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}
