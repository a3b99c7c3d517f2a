package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

func TestRecorder_Percentiles(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	// 1..1000 ms once each, measured; and warmup batches of an hour that must not count.
	for i := 1; i <= 1000; i++ {
		r.sent(10, 0, true)
		r.answered(&ingestv1.IngestStreamResponse{Accepted: 10}, time.Duration(i)*time.Millisecond, true)
	}
	for range 50 {
		r.sent(10, 0, false)
		r.answered(&ingestv1.IngestStreamResponse{Accepted: 10}, time.Hour, false)
	}
	rep := Report{Window: 2 * time.Second}
	r.report(&rep)

	within := func(want time.Duration, got time.Duration) {
		t.Helper()
		require.InDelta(t, float64(want), float64(got), float64(want)/500, "want %v, got %v", want, got) // 3 significant digits
	}
	require.Equal(t, int64(1000), rep.Latency.Count)
	within(500*time.Millisecond, rep.Latency.P50)
	within(900*time.Millisecond, rep.Latency.P90)
	within(990*time.Millisecond, rep.Latency.P99)
	within(999*time.Millisecond, rep.Latency.P999)
	within(1000*time.Millisecond, rep.Latency.Max)
	within(500500*time.Microsecond, rep.Latency.Mean)

	require.Equal(t, int64(1050), rep.Total.Batches)
	require.Equal(t, int64(10500), rep.Total.Accepted)
	require.Equal(t, int64(1000), rep.Measured.Batches)
	require.Equal(t, int64(10000), rep.Measured.Accepted)
	require.InDelta(t, 5000, rep.AcceptedPerSecond, 1e-9, "measured events over the window")
}

func TestRecorder_LatencyOutOfRangeIsClamped(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.sent(1, 0, true)
	r.answered(&ingestv1.IngestStreamResponse{Accepted: 1}, 10*time.Minute, true)
	r.sent(1, 0, true)
	r.answered(&ingestv1.IngestStreamResponse{Accepted: 1}, 0, true)
	var rep Report
	r.report(&rep)
	require.Equal(t, int64(2), rep.Latency.Count)
	require.InDelta(t, float64(time.Minute), float64(rep.Latency.Max), float64(time.Minute)/500)
}

func TestRecorder_Counts(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.sent(5, 2, true)
	r.answered(&ingestv1.IngestStreamResponse{Accepted: 2, Rejected: []*ingestv1.RejectedEvent{
		{Index: 0, Reason: ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED},
		{Index: 1, Reason: ingestv1.RejectReason_REJECT_REASON_QUOTA_EXHAUSTED},
		{Index: 3, Reason: ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE},
	}}, time.Millisecond, true)
	r.sent(7, 0, true)
	r.unanswered(7, true)
	r.streamOpened()
	r.streamOpened()
	r.streamFailed(codes.ResourceExhausted, errString("tenant a: ResourceExhausted: slow down"))
	r.streamFailed(codes.ResourceExhausted, errString("tenant a: ResourceExhausted: slow down"))
	r.protocolError("response for unknown sequence 9")

	var rep Report
	r.report(&rep)
	want := Counts{
		Batches: 2, Events: 12, Duplicates: 2, Answered: 1, Accepted: 2, Rejected: 3, Throttled: 2, Unanswered: 7,
		RejectedByReason: map[string]int64{"REJECT_REASON_RATE_LIMITED": 1, "REJECT_REASON_QUOTA_EXHAUSTED": 1, "REJECT_REASON_INVALID_TYPE": 1},
	}
	require.Equal(t, want, rep.Total)
	require.Equal(t, want, rep.Measured)
	require.Equal(t, int64(2), rep.StreamOpens)
	require.Equal(t, map[string]int64{"ResourceExhausted": 2}, rep.StreamErrors)
	require.Equal(t, int64(3), rep.Errors)
	require.Len(t, rep.ErrorSamples, 2, "samples are distinct")

	var text strings.Builder
	require.NoError(t, rep.WriteText(&text))
	require.Contains(t, text.String(), "REJECT_REASON_RATE_LIMITED=1")
	require.Contains(t, text.String(), "ResourceExhausted=2")
}

func TestRecorder_Progress(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.sent(100, 0, false)
	r.sent(100, 0, false)
	r.answered(&ingestv1.IngestStreamResponse{Accepted: 100}, 4*time.Millisecond, false)
	p := r.progress(time.Second, 500*time.Millisecond, PhaseWarmup)
	require.InDelta(t, 400, p.SentPerSecond, 1e-9)
	require.InDelta(t, 200, p.AcceptedPerSecond, 1e-9)
	require.Equal(t, int64(1), p.InFlight)
	require.InDelta(t, float64(4*time.Millisecond), float64(p.P99), float64(10*time.Microsecond))
	require.Contains(t, p.String(), "warmup")

	p = r.progress(2*time.Second, time.Second, PhaseMeasure)
	require.Zero(t, p.SentPerSecond, "a new interval starts at each progress")
	require.Zero(t, p.P99)
	require.Equal(t, int64(100), p.Accepted, "totals since the start")
}

func TestGroup(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		require.Equal(t, want, group(in))
	}
}

type errString string

func (e errString) Error() string { return string(e) }
