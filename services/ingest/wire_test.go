package ingest

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// requireSameVerdicts judges raw events on the wire path and, decoded, on
// the decoded path, and requires the same verdicts: same indexes accepted,
// the same events (decoding what the wire path would write), and the same
// rejections with the same messages.
func requireSameVerdicts(t *testing.T, svc *Service, raw [][]byte, now time.Time, lim *tenancy.Limits) verdicts {
	t.Helper()
	decoded := make([]*ingestv1.Event, len(raw))
	decodeErr := false
	for i, b := range raw {
		decoded[i] = new(ingestv1.Event)
		if err := proto.Unmarshal(b, decoded[i]); err != nil {
			decodeErr = true
		}
	}
	wv, werr := svc.judgeWire(raw, now, lim)
	if decodeErr {
		// Unless the broken event lies beyond the batch limit, where
		// nothing looks at it, the batch is malformed.
		if werr == nil {
			for i, b := range raw[:min(len(raw), lim.MaxBatchEvents)] {
				require.NoError(t, proto.Unmarshal(b, new(ingestv1.Event)), "event %d decodes on neither path", i)
			}
			return wv
		}
		require.ErrorIs(t, werr, errMalformed)
		return wv
	}
	require.NoError(t, werr)
	dv, err := svc.judge(decoded, now, lim)
	require.NoError(t, err)

	require.Equal(t, len(dv.accepted), len(wv.accepted), "accepted")
	for i := range dv.accepted {
		require.Equal(t, dv.accepted[i].index, wv.accepted[i].index)
		require.Equal(t, string(dv.accepted[i].id), string(wv.accepted[i].id))
		require.Equal(t, string(dv.accepted[i].ShardKey), string(wv.accepted[i].ShardKey))
		var got ingestv1.Event
		require.NoError(t, proto.Unmarshal(wv.accepted[i].Data, &got))
		require.True(t, proto.Equal(decoded[dv.accepted[i].index], &got), "event %d written as received", i)
		require.LessOrEqual(t, len(wv.accepted[i].Data), lim.MaxEventBytes)
	}
	require.Equal(t, len(dv.rejected), len(wv.rejected), "rejected")
	for i := range dv.rejected {
		require.True(t, proto.Equal(dv.rejected[i], wv.rejected[i]), "verdict %d: %v vs %v", i, dv.rejected[i], wv.rejected[i])
	}
	return wv
}

func wireEvents(t testing.TB, events ...*ingestv1.Event) [][]byte {
	t.Helper()
	out := make([][]byte, len(events))
	for i, ev := range events {
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		out[i] = b
	}
	return out
}

func TestJudgeWireMatchesDecodedPath(t *testing.T) {
	t.Parallel()
	svc := fuzzService(t)
	now := svc.cfg.Now()
	lim := fuzzLimits()
	good := func(id string) *ingestv1.Event {
		v := 2.5
		return &ingestv1.Event{EventId: id, Type: "view", UserId: "u1", SessionId: "s1",
			Timestamp: timestamppb.New(now.Add(-time.Hour)), Properties: map[string]string{"a": "1", "b": "2"}, Value: &v}
	}
	noUser := good("n")
	noUser.UserId = ""
	old := good("o")
	old.Timestamp = timestamppb.New(now.Add(-8 * 24 * time.Hour))
	badKey := good("k")
	badKey.Properties["bad key"] = "x"
	nan := good("nan")
	nan.Value = ptrTo(math.NaN())

	// Every verdict, and the fast path taken for the valid events.
	v := requireSameVerdicts(t, svc, wireEvents(t, good("a"), noUser, old), now, &lim)
	require.Len(t, v.accepted, 2)
	require.Equal(t, "n", string(v.accepted[1].ShardKey), "no user: the event_id picks the shard")
	requireSameVerdicts(t, svc, wireEvents(t, badKey, nan, good("z")), now, &lim)
	requireSameVerdicts(t, svc, wireEvents(t, good("1"), good("2"), good("3"), good("4"), old), now, &lim) // past the batch limit

	// Unusual but valid encodings go to the slow path and are accepted there.
	raw := wireEvents(t, good("dup"))[0]
	dupID := protowire.AppendString(protowire.AppendTag(append([]byte{}, raw...), eventIDField, protowire.BytesType), "dup2")
	unknown := protowire.AppendVarint(protowire.AppendTag(append([]byte{}, raw...), 99, protowire.VarintType), 7)
	empty := protowire.AppendString(protowire.AppendTag(append([]byte{}, raw...), eventSessionField, protowire.BytesType), "")
	v = requireSameVerdicts(t, svc, [][]byte{dupID, unknown, empty}, now, &lim)
	require.Len(t, v.accepted, 3)
	require.Equal(t, "dup2", string(v.accepted[0].id), "the last event_id wins, as in the decoder")
	_, _, ok := scanEvent(dupID, now, &lim)
	require.False(t, ok, "a repeated field is not the fast path's")

	// A broken event fails the batch.
	_, err := svc.judgeWire([][]byte{raw[:len(raw)-1]}, now, &lim)
	require.ErrorIs(t, err, errMalformed)
}

func ptrTo[T any](v T) *T { return &v }

func TestParseStreamRequest(t *testing.T) {
	t.Parallel()
	req := &ingestv1.IngestStreamRequest{Sequence: 42, Events: []*ingestv1.Event{{EventId: "a"}, {EventId: "b"}}}
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	b = protowire.AppendVarint(protowire.AppendTag(b, 77, protowire.VarintType), 1) // unknown: skipped
	seq, events, err := parseStreamRequest(b)
	require.NoError(t, err)
	require.EqualValues(t, 42, seq)
	require.Len(t, events, 2)
	require.Equal(t, "b", string(wireEventID(events[1])))
	_, _, err = parseStreamRequest(b[:3])
	require.ErrorIs(t, err, errMalformed)
}

// FuzzJudgeWire: for any event, and any mutation of its encoding, the wire
// path gives the verdicts of the decoded path, and never panics.
func FuzzJudgeWire(f *testing.F) {
	now := int64(1_770_000_000)
	f.Add("evt-1", "page_view", "u", "s", now-60, int32(5), true, "plan", "pro", uint8(3), 1.5, true, []byte{}, uint16(0))
	f.Add("", "", "", "", int64(0), int32(0), false, "", "", uint8(0), 0.0, false, []byte{0x08, 0x01}, uint16(3))
	f.Add("a b\xff", "1x", "\xff", "s\xfe", int64(math.MaxInt64), int32(-1), true, "k\xff", "\xff", uint8(70), math.NaN(), true, []byte{0x3a, 0x00}, uint16(1))
	f.Add("e", "t", strings.Repeat("u", 300), "s", now, int32(0), true, "k", strings.Repeat("v", 1025), uint8(1), 0.0, false, []byte{0x0a, 0x01, 'x'}, uint16(2))
	svc := fuzzService(f)
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, id, typ, user, session string, sec int64, nanos int32, hasTS bool,
		key, value string, nProps uint8, num float64, hasNum bool, extra []byte, at uint16) {
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
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		// Splice arbitrary bytes into the encoding: repeated, unknown and
		// broken fields.
		pos := int(at) % (len(b) + 1)
		mutated := append(append(append([]byte{}, b[:pos]...), extra...), b[pos:]...)
		requireSameVerdicts(t, svc, [][]byte{b, mutated, b, mutated}, svc.cfg.Now(), &lim)
	})
}
