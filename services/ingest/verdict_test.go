package ingest

import (
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// TestEveryValidatedFieldHasAReason guards the mapping from protovalidate
// violations to reasons: a rule added to Event in the proto must be mapped
// here too, or its violations would carry REJECT_REASON_UNSPECIFIED.
func TestEveryValidatedFieldHasAReason(t *testing.T) {
	t.Parallel()
	fields := (&ingestv1.Event{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !proto.HasExtension(fd.Options(), validate.E_Field) {
			continue
		}
		_, ok := fieldReasons[string(fd.Name())]
		require.True(t, ok, "Event.%s has validation rules but no reject reason", fd.Name())
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour:      "7 days",
		24 * time.Hour:          "1 day",
		10 * time.Minute:        "10m0s",
		50 * time.Hour:          "2.1 days",
		1500 * time.Millisecond: "2s",
		time.Millisecond:        "1ms",
	} {
		require.Equal(t, want, humanDuration(d))
	}
}

func TestEchoIsValidAndBounded(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ab\uFFFDc", echo("ab\xffc"))
	long := echo(string(make([]byte, 5000)) + "é")
	require.True(t, utf8.ValidString(long))
	require.LessOrEqual(t, len(long), maxEchoBytes+len("…"))
	multi := echo(string(make([]rune, 2000)))
	require.True(t, utf8.ValidString(multi))
}

// fuzzLimits are the limits of fuzzService: the defaults with batches of 3.
func fuzzLimits() tenancy.Limits {
	l := tenancy.DefaultLimits()
	l.MaxBatchEvents = 3
	return l
}

// fuzzService is a service for judging only; it never produces.
func fuzzService(t testing.TB) *Service {
	svc, err := New(Config{Limits: defaultLimits{fuzzLimits()}, Now: func() time.Time { return time.Unix(1_770_000_000, 0) }}, nopProducer{}, nil, nil)
	require.NoError(t, err)
	return svc
}

// FuzzJudge: whatever the field values, judge never panics, gives every event
// exactly one verdict with a known reason and a valid message, accepts only
// events that pass every rule, and the response marshals.
func FuzzJudge(f *testing.F) {
	now := int64(1_770_000_000)
	f.Add("evt-1", "page_view", "u", "s", now, int32(0), true, "plan", "pro", uint8(1), 1.5, true, uint8(2))
	f.Add("", "", "", "", int64(0), int32(0), false, "", "", uint8(0), 0.0, false, uint8(1))
	f.Add("a b\xff", "1x", "\xff", "s\xfe", int64(math.MaxInt64), int32(-1), true, "k\xff", "\xff", uint8(70), math.NaN(), true, uint8(5))
	f.Add("e", "t", "u", "s", int64(math.MinInt64), int32(2_000_000_000), true, "", "v", uint8(64), math.Inf(-1), true, uint8(4))
	svc := fuzzService(f)
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, id, typ, user, session string, sec int64, nanos int32, hasTS bool,
		key, value string, nProps uint8, num float64, hasNum bool, nEvents uint8) {
		ev := &ingestv1.Event{EventId: id, Type: typ, UserId: user, SessionId: session}
		if hasTS {
			ev.Timestamp = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
		}
		if nProps > 0 {
			ev.Properties = map[string]string{key: value}
			for i := range int(nProps) - 1 {
				ev.Properties[key+string(rune('a'+i%26))+string(rune('0'+i/26))] = value
			}
		}
		if hasNum {
			ev.Value = &num
		}
		n := int(nEvents%6) + 1
		events := make([]*ingestv1.Event, n)
		for i := range events {
			events[i] = proto.CloneOf(ev)
		}
		if n > 1 {
			events[1] = nil // cannot come off the wire, must not break judge
		}

		v, err := svc.judge(events, svc.cfg.Now(), &lim)
		require.NoError(t, err)
		require.Equal(t, n, len(v.accepted)+len(v.rejected))
		seen := make([]bool, n)
		for _, a := range v.accepted {
			idx := a.index
			require.False(t, seen[idx])
			seen[idx] = true
			var got ingestv1.Event
			require.NoError(t, proto.Unmarshal(a.Data, &got))
			require.True(t, proto.Equal(events[idx], &got))
			require.NoError(t, svc.validator.Validate(&got))
			require.LessOrEqual(t, len(a.Data), lim.MaxEventBytes)
		}
		for _, r := range v.rejected {
			require.False(t, seen[r.GetIndex()], "index %d judged twice", r.GetIndex())
			seen[r.GetIndex()] = true
			require.NotEqual(t, ingestv1.RejectReason_REJECT_REASON_UNSPECIFIED, r.GetReason(), r.GetMessage())
			require.True(t, utf8.ValidString(r.GetMessage()))
			require.NotEmpty(t, r.GetMessage())
			if r.GetIndex() >= 3 {
				require.Equal(t, ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE, r.GetReason())
			}
		}
		_, err = proto.Marshal(&ingestv1.IngestResponse{Accepted: int32(len(v.accepted)), Rejected: v.rejected})
		require.NoError(t, err)
		_, err = proto.Marshal(&ingestv1.IngestStreamResponse{Rejected: withUnavailable(v)})
		require.NoError(t, err)
	})
}
