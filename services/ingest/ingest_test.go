package ingest_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/tenancy"
)

type reason = ingestv1.RejectReason

const (
	invalidEventID   = ingestv1.RejectReason_REJECT_REASON_INVALID_EVENT_ID
	invalidType      = ingestv1.RejectReason_REJECT_REASON_INVALID_TYPE
	tsMissing        = ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_MISSING
	tsTooOld         = ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_OLD
	tsFuture         = ingestv1.RejectReason_REJECT_REASON_TIMESTAMP_TOO_FAR_IN_FUTURE
	tooManyProps     = ingestv1.RejectReason_REJECT_REASON_TOO_MANY_PROPERTIES
	propKeyInvalid   = ingestv1.RejectReason_REJECT_REASON_PROPERTY_KEY_INVALID
	propValueTooLong = ingestv1.RejectReason_REJECT_REASON_PROPERTY_VALUE_TOO_LONG
	invalidUTF8      = ingestv1.RejectReason_REJECT_REASON_INVALID_UTF8
	nonFinite        = ingestv1.RejectReason_REJECT_REASON_NON_FINITE_VALUE
	tooLarge         = ingestv1.RejectReason_REJECT_REASON_EVENT_TOO_LARGE
	batchTooLarge    = ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE
	userIDTooLong    = ingestv1.RejectReason_REJECT_REASON_USER_ID_TOO_LONG
	sessionIDTooLong = ingestv1.RejectReason_REJECT_REASON_SESSION_ID_TOO_LONG
	unavailable      = ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE
)

func manyProps(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// TestIngestRejectsBadEventsAndKeepsTheirNeighbours: each bad event sits
// between two valid ones; it is rejected with its reason and a message naming
// the field, and both neighbours are accepted and written to the event log.
func TestIngestRejectsBadEventsAndKeepsTheirNeighbours(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)

	tests := []struct {
		name     string
		edit     func(*ingestv1.Event)
		reason   reason
		message  string // must be contained in the verdict's message
		echoedID string // the event_id in the verdict, when not the one sent
	}{
		{"missing event_id", func(ev *ingestv1.Event) { ev.EventId = "" }, invalidEventID, "event_id is empty", ""},
		{"event_id with a space", func(ev *ingestv1.Event) { ev.EventId = "a b" }, invalidEventID, `event_id has ' ' at offset 1`, ""},
		{"event_id with a slash", func(ev *ingestv1.Event) { ev.EventId = "a/b" }, invalidEventID, `event_id has '/' at offset 1`, ""},
		{"event_id too long", func(ev *ingestv1.Event) { ev.EventId = strings.Repeat("e", 129) }, invalidEventID, "event_id is 129 characters, limit 128", ""},
		{"missing type", func(ev *ingestv1.Event) { ev.Type = "" }, invalidType, "type is empty", ""},
		{"type starting with a digit", func(ev *ingestv1.Event) { ev.Type = "1click" }, invalidType, `type has '1' at offset 0`, ""},
		{"type with a space", func(ev *ingestv1.Event) { ev.Type = "page view" }, invalidType, `type has ' ' at offset 4`, ""},
		{"type too long", func(ev *ingestv1.Event) { ev.Type = "t" + strings.Repeat("x", 64) }, invalidType, "type is 65 characters, limit 64", ""},
		{"missing timestamp", func(ev *ingestv1.Event) { ev.Timestamp = nil }, tsMissing, "timestamp is missing", ""},
		{"timestamp with invalid nanos", func(ev *ingestv1.Event) { ev.Timestamp.Nanos = -1 }, tsMissing, "timestamp is not a valid time: nanos is -1", ""},
		{"timestamp too old", func(ev *ingestv1.Event) { ev.Timestamp = timestamppb.New(now.Add(-8 * 24 * time.Hour)) }, tsTooOld, "timestamp 2026-04-23T12:00:00Z is 8 days in the past, limit 7 days", ""},
		{"timestamp before year 1", func(ev *ingestv1.Event) { ev.Timestamp.Seconds = math.MinInt64 }, tsTooOld, "timestamp is before year 1", ""},
		{"timestamp too far in the future", func(ev *ingestv1.Event) { ev.Timestamp = timestamppb.New(now.Add(11 * time.Minute)) }, tsFuture, "is 11m0s in the future, limit 10m0s", ""},
		{"timestamp after year 9999", func(ev *ingestv1.Event) { ev.Timestamp.Seconds = math.MaxInt64 }, tsFuture, "timestamp is after year 9999", ""},
		{"65 properties", func(ev *ingestv1.Event) { ev.Properties = manyProps(65) }, tooManyProps, "properties has 65 pairs, limit 64", ""},
		{"property key too long", func(ev *ingestv1.Event) { ev.Properties[strings.Repeat("k", 65)] = "v" }, propKeyInvalid, `is 65 characters, limit 64`, ""},
		{"empty property key", func(ev *ingestv1.Event) { ev.Properties[""] = "v" }, propKeyInvalid, `property key "" is empty`, ""},
		{"property key with a space", func(ev *ingestv1.Event) { ev.Properties["my key"] = "v" }, propKeyInvalid, `property key "my key" has ' ' at offset 2`, ""},
		{"property value too long", func(ev *ingestv1.Event) { ev.Properties["plan"] = strings.Repeat("p", 2048) }, propValueTooLong, `property "plan": value is 2048 bytes, limit 1024`, ""},
		{"user_id too long", func(ev *ingestv1.Event) { ev.UserId = strings.Repeat("u", 257) }, userIDTooLong, "user_id is 257 bytes, limit 256", ""},
		{"session_id too long", func(ev *ingestv1.Event) { ev.SessionId = strings.Repeat("s", 257) }, sessionIDTooLong, "session_id is 257 bytes, limit 256", ""},
		{"NaN value", func(ev *ingestv1.Event) { ev.Value = ptr(math.NaN()) }, nonFinite, "value is NaN; it must be a finite number", ""},
		{"+Inf value", func(ev *ingestv1.Event) { ev.Value = ptr(math.Inf(1)) }, nonFinite, "value is +Inf", ""},
		{"-Inf value", func(ev *ingestv1.Event) { ev.Value = ptr(math.Inf(-1)) }, nonFinite, "value is -Inf", ""},
		{"oversized event", func(ev *ingestv1.Event) {
			for i := range 40 {
				ev.Properties[fmt.Sprintf("p%02d", i)] = strings.Repeat("x", 1000)
			}
		}, tooLarge, "bytes encoded, limit 32768", ""},
		{"invalid UTF-8 in event_id", func(ev *ingestv1.Event) { ev.EventId = "bad\xffid" }, invalidUTF8, "event_id is not valid UTF-8 (invalid byte at offset 3)", "bad\uFFFDid"},
		{"invalid UTF-8 in type", func(ev *ingestv1.Event) { ev.Type = "click\xc3" }, invalidUTF8, "type is not valid UTF-8 (invalid byte at offset 5)", ""},
		{"invalid UTF-8 in user_id", func(ev *ingestv1.Event) { ev.UserId = "\xffu" }, invalidUTF8, "user_id is not valid UTF-8", ""},
		{"invalid UTF-8 in session_id", func(ev *ingestv1.Event) { ev.SessionId = "s\xfe" }, invalidUTF8, "session_id is not valid UTF-8", ""},
		{"invalid UTF-8 in a property key", func(ev *ingestv1.Event) { ev.Properties["k\xff"] = "v" }, invalidUTF8, `property key "k\xff" is not valid UTF-8`, ""},
		{"invalid UTF-8 in a property value", func(ev *ingestv1.Event) { ev.Properties["plan"] = "pr\xffo" }, invalidUTF8, `property "plan": value is not valid UTF-8 (invalid byte at offset 2)`, ""},
		// The first failing check decides.
		{"UTF-8 before other rules", func(ev *ingestv1.Event) { ev.Type = "1"; ev.UserId = "\xff" }, invalidUTF8, "user_id", ""},
		{"rules in field order", func(ev *ingestv1.Event) { ev.Type = "1"; ev.Value = ptr(math.NaN()) }, invalidType, "type", ""},
		{"rules before the time window", func(ev *ingestv1.Event) {
			ev.Value = ptr(math.NaN())
			ev.Timestamp = timestamppb.New(now.Add(-30 * 24 * time.Hour))
		}, nonFinite, "value", ""},
		{"time window before size", func(ev *ingestv1.Event) {
			ev.Timestamp = timestamppb.New(now.Add(time.Hour))
			for i := range 40 {
				ev.Properties[fmt.Sprintf("p%02d", i)] = strings.Repeat("x", 1000)
			}
		}, tsFuture, "timestamp", ""},
	}
	sent := map[string]*ingestv1.Event{} // the valid neighbours, by event_id
	for i, tt := range tests {
		prefix := fmt.Sprintf("case%02d", i)
		bad := validEvent(prefix + "-bad")
		tt.edit(bad)
		events := []*ingestv1.Event{validEvent(prefix + "-0"), bad, validEvent(prefix + "-2")}
		sent[prefix+"-0"], sent[prefix+"-2"] = events[0], events[2]
	}
	// The group returns when all its parallel subtests are done; the event
	// log is read once, after it.
	t.Run("group", func(t *testing.T) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				prefix := fmt.Sprintf("case%02d", i)
				bad := validEvent(prefix + "-bad")
				tt.edit(bad)
				events := []*ingestv1.Event{sent[prefix+"-0"], bad, sent[prefix+"-2"]}

				resp, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
				require.NoError(t, err)
				require.EqualValues(t, 2, resp.GetAccepted())
				require.Len(t, resp.GetRejected(), 1)
				r := resp.GetRejected()[0]
				require.EqualValues(t, 1, r.GetIndex())
				require.Equal(t, tt.reason, r.GetReason(), r.GetMessage())
				require.Contains(t, r.GetMessage(), tt.message)
				wantID := tt.echoedID
				if wantID == "" {
					wantID = bad.GetEventId()
				}
				require.Equal(t, wantID, r.GetEventId())
				require.True(t, utf8.ValidString(r.GetMessage()))
				_, err = proto.Marshal(resp) // the response itself is valid
				require.NoError(t, err)
			})
		}
	})

	got := written(t, e.kafka, "acme")
	require.Len(t, got, len(sent), "exactly the valid events were written")
	for id, ev := range sent {
		require.Contains(t, got, id)
		require.True(t, proto.Equal(ev, got[id]), id)
	}
}

func TestIngestAcceptsEdgesOfTheRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	edge := validEvent(strings.Repeat("e", 128))
	edge.Type = "a" + strings.Repeat("b", 63)
	edge.UserId = strings.Repeat("u", 256)
	edge.SessionId = strings.Repeat("s", 256)
	edge.Properties = manyProps(62)
	edge.Properties["plan"] = strings.Repeat("p", 1024)
	edge.Properties[strings.Repeat("k", 64)] = "ünïcödé" // 64 pairs in all
	edge.Value = ptr(-1e308)
	old := validEvent("oldest")
	old.Timestamp = timestamppb.New(now.Add(-7 * 24 * time.Hour))
	future := validEvent("latest")
	future.Timestamp = timestamppb.New(now.Add(10 * time.Minute))
	noTS := validEvent("minimal")
	noTS.UserId, noTS.Properties = "", nil

	resp, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: []*ingestv1.Event{edge, old, future, noTS}})
	require.NoError(t, err)
	require.Empty(t, resp.GetRejected())
	require.EqualValues(t, 4, resp.GetAccepted())
	require.Len(t, written(t, e.kafka, "acme"), 4)
}

func TestIngestBatchTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(func(l *tenancy.Limits) { l.MaxBatchEvents = 3 }))
	events := validEvents("b", 5)
	events[1].Type = "" // still judged: within the limit
	resp, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.GetAccepted())
	require.Len(t, resp.GetRejected(), 3)
	require.Equal(t, invalidType, resp.GetRejected()[0].GetReason())
	for i, r := range resp.GetRejected()[1:] {
		require.EqualValues(t, 3+i, r.GetIndex())
		require.Equal(t, batchTooLarge, r.GetReason())
		require.Contains(t, r.GetMessage(), "batch has 5 events, limit 3")
		require.Equal(t, events[3+i].GetEventId(), r.GetEventId())
	}
	got := written(t, e.kafka, "acme")
	require.Len(t, got, 2)
	require.Contains(t, got, "b-0")
	require.Contains(t, got, "b-2")
}

func TestIngestAllInvalidProducesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	events := validEvents("x", 3)
	events[0].EventId = ""
	events[1].Timestamp = nil
	events[2].Value = ptr(math.NaN())
	_, err := e.svc.Ingest(tenantCtx(t.Context(), "acme"), &ingestv1.IngestRequest{Events: events})
	// Nothing accepted: INVALID_ARGUMENT naming every event, not a success with accepted=0.
	var nothing *ingest.NothingAcceptedError
	require.ErrorAs(t, err, &nothing)
	require.Len(t, nothing.Rejected, 3)
	for i, r := range nothing.Rejected {
		require.EqualValues(t, i, r.GetIndex())
	}
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Contains(t, st.Message(), "events[0]: event_id is empty")
	require.Len(t, st.Details(), 1)
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	require.True(t, ok)
	require.Len(t, br.GetFieldViolations(), 3)
	require.Equal(t, "events[1]", br.GetFieldViolations()[1].GetField())
	require.Equal(t, "REJECT_REASON_TIMESTAMP_MISSING", br.GetFieldViolations()[1].GetReason())
	require.Zero(t, e.producer.calls.Load())
	require.Empty(t, readRecords(t, e.kafka.Brokers()))
	require.Equal(t, 1.0, counter(t, e.reg, "abacus_ingest_events_total", "invalid_event_id"))
	require.Equal(t, 1.0, counter(t, e.reg, "abacus_ingest_events_total", "timestamp_missing"))
	require.Equal(t, 1.0, counter(t, e.reg, "abacus_ingest_events_total", "non_finite_value"))
	require.Equal(t, 0.0, counter(t, e.reg, "abacus_ingest_events_total", "accepted"))
}

func TestIngestWritesOneBatchForTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	events := validEvents("one", 50)
	resp, err := e.svc.Ingest(tenantCtx(t.Context(), "globex"), &ingestv1.IngestRequest{Events: events})
	require.NoError(t, err)
	require.EqualValues(t, 50, resp.GetAccepted())
	require.EqualValues(t, 1, e.producer.calls.Load())

	records := readRecords(t, e.kafka.Brokers())
	require.Len(t, records, 1)
	tenant, batch, err := eventlog.Decode(records[0])
	require.NoError(t, err)
	require.Equal(t, tenancy.ID("globex"), tenant)
	require.Equal(t, "globex", batch.GetTenantId())
	require.True(t, batch.GetReceivedTime().AsTime().Equal(now))
	require.Len(t, batch.GetEvents(), 50)
	require.Equal(t, 50.0, counter(t, e.reg, "abacus_ingest_events_total", "accepted"))
}

func TestIngestNeedsAnAuthenticatedTenant(t *testing.T) {
	t.Parallel()
	svc, err := ingest.New(ingest.Config{}, &countingProducer{}, nil, nil)
	require.NoError(t, err)
	_, err = svc.Ingest(t.Context(), &ingestv1.IngestRequest{Events: validEvents("x", 1)})
	require.ErrorIs(t, err, tenancy.ErrNoTenant)
}

// TestIngestWhenKafkaIsUnavailable: while the broker holds produce requests,
// Ingest fails within the caller's deadline as unavailable (retryable) and
// accepts nothing; once it recovers, the next Ingest succeeds.
func TestIngestWhenKafkaIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := tenantCtx(t.Context(), "acme")
	_, err := e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("warm", 1)})
	require.NoError(t, err)
	sw := hangProduce(t, e.kafka.Cluster())

	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		resp, err := e.svc.Ingest(dctx, &ingestv1.IngestRequest{Events: validEvents("down", 3)})
		require.Nil(t, resp)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ingest.ErrUnavailable)
		require.ErrorIs(t, err, eventlog.ErrUnavailable)
		require.NotErrorIs(t, err, context.DeadlineExceeded)
		var ue *ingest.UnavailableError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, 3, ue.Events)
		require.Equal(t, time.Second, ue.RetryDelay())
	case <-time.After(2*time.Second + afterDeadline):
		t.Fatal("Ingest did not return after its deadline")
	}
	require.Equal(t, 3.0, counter(t, e.reg, "abacus_ingest_events_total", "unavailable"))

	sw.heal()
	resp, err := e.svc.Ingest(ctx, &ingestv1.IngestRequest{Events: validEvents("up", 2)})
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.GetAccepted())
	got := written(t, e.kafka, "acme")
	require.Contains(t, got, "up-0")
	require.Contains(t, got, "up-1")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, ingest.Config{}.Validate())
	err := ingest.Config{
		MaxInFlightPerStream: -1,
		ProduceTimeout:       -time.Second,
	}.Validate()
	for _, want := range []string{"MaxInFlightPerStream", "ProduceTimeout"} {
		require.ErrorContains(t, err, want)
	}
	_, err = ingest.New(ingest.Config{ProduceTimeout: -1}, &countingProducer{}, nil, nil)
	require.ErrorContains(t, err, "ProduceTimeout")
	_, err = ingest.New(ingest.Config{}, nil, nil, nil)
	require.Error(t, err)
}
