package loadgen

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

var userIDPattern = regexp.MustCompile(`^user-[0-9]{8}$`)

func decodeBatch(t *testing.T, b []byte) *ingestv1.IngestStreamRequest {
	t.Helper()
	var req ingestv1.IngestStreamRequest
	require.NoError(t, proto.Unmarshal(b, &req))
	return &req
}

func TestBatchTemplate_Rewrite(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 200
	tmpl := newBatchTemplate(rng, "run42", n)
	require.Equal(t, n, tmpl.events())

	now := time.Now().Unix()
	tests := []struct {
		name   string
		tenant int
		base   uint64
		sec    int64
		seq    uint64
		users  int
	}{
		{name: "first send", tenant: 0, base: 0, sec: now, seq: 1, users: 1_000_000},
		{name: "long sequence and counter", tenant: 0xbeef, base: 1<<63 - 1000, sec: now + 1, seq: 1 << 40, users: 10},
		{name: "short sequence again", tenant: 3, base: 12345, sec: now - 3600, seq: 7, users: MaxUsers},
		{name: "epoch start still 5 bytes", tenant: 1, base: 1, sec: 0, seq: 0, users: 1},
	}
	for _, tt := range tests {
		// Sequential: every case rewrites the same template, as a worker does.
		ids := make([]uint64, n)
		for i := range ids {
			ids[i] = tt.base + uint64(i)
		}
		b := tmpl.rewrite(tt.tenant, ids, tt.sec, rng, tt.users, tt.seq)
		req := decodeBatch(t, b)
		require.Equal(t, tt.seq, req.GetSequence(), tt.name)
		require.Len(t, req.GetEvents(), n, tt.name)
		seen := map[string]bool{}
		for i, ev := range req.GetEvents() {
			want := fmt.Sprintf("run42-%04x-%016x", tt.tenant, tt.base+uint64(i))
			require.Equal(t, want, ev.GetEventId(), "%s: event %d", tt.name, i)
			require.False(t, seen[ev.GetEventId()], "%s: duplicate id %s", tt.name, ev.GetEventId())
			seen[ev.GetEventId()] = true
			require.Equal(t, tt.sec, ev.GetTimestamp().GetSeconds(), tt.name)
			require.Zero(t, ev.GetTimestamp().GetNanos(), tt.name)
			require.Regexp(t, userIDPattern, ev.GetUserId(), tt.name)
			u, err := strconv.Atoi(ev.GetUserId()[len("user-"):])
			require.NoError(t, err)
			require.Less(t, u, tt.users, tt.name)
			require.NotEmpty(t, ev.GetType())
			require.NotEmpty(t, ev.GetSessionId())
			require.GreaterOrEqual(t, len(ev.GetProperties()), 3)
			require.LessOrEqual(t, len(ev.GetProperties()), 5)
		}
	}
}

// Every generated event must pass the contract's validation rules, or the benchmark would
// measure rejections.
func TestBatchTemplate_EventsAreValid(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	tmpl := newBatchTemplate(rng, NewRunID(), 500)
	ids := make([]uint64, 500)
	for i := range ids {
		ids[i] = uint64(i)
	}
	req := decodeBatch(t, tmpl.rewrite(9, ids, time.Now().Unix(), rng, DefaultUsers, 1))
	require.NoError(t, protovalidate.Validate(req))
	types := map[string]int{}
	withValue := 0
	for _, ev := range req.GetEvents() {
		require.NoError(t, protovalidate.Validate(ev))
		types[ev.GetType()]++
		if ev.Value != nil {
			withValue++
		}
	}
	require.GreaterOrEqual(t, len(types), 5, "a small set of types, all of them drawn: %v", types)
	require.Greater(t, withValue, 50, "some events carry a value")
	require.Less(t, withValue, 400, "not all events carry a value")
}

func TestBatchTemplate_EventSize(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 2000
	tmpl := newBatchTemplate(rng, NewRunID(), n)
	avg := float64(tmpl.body) / n
	require.InDelta(t, 200, avg, 50, "average encoded event with its framing: %.1f bytes", avg)
	req := decodeBatch(t, tmpl.rewrite(0, make([]uint64, n), time.Now().Unix(), rng, 10, 1))
	for _, ev := range req.GetEvents() {
		require.LessOrEqual(t, proto.Size(ev)+3, approxEventBytes, "approxEventBytes bounds every event")
	}
}

func TestBatchTemplate_Detach(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	tmpl := newBatchTemplate(rng, "a", 3)
	old := tmpl.rewrite(0, []uint64{1, 2, 3}, 100, rng, 10, 1)
	kept := append([]byte(nil), old...)
	tmpl.detach()
	_ = tmpl.rewrite(1, []uint64{4, 5, 6}, 200, rng, 10, 2)
	require.Equal(t, kept, old, "the bytes handed out before detach stay untouched")
	require.Equal(t, uint64(2), decodeBatch(t, tmpl.buf).GetSequence())
}

func TestPutPaddedVarint(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 127, 128, 1 << 28, uint64(time.Now().Unix()), maxSeconds} {
		b := make([]byte, secondsBytes)
		putPaddedVarint(b, uint64(v))
		got, n := protowire.ConsumeVarint(b)
		require.Equal(t, secondsBytes, n, "value %d", v)
		require.Equal(t, uint64(v), got)
	}
}

func BenchmarkBatchTemplate_Rewrite(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	tmpl := newBatchTemplate(rng, "bench", DefaultBatchSize)
	ids := make([]uint64, DefaultBatchSize)
	now := time.Now().Unix()
	b.SetBytes(int64(tmpl.body))
	for i := 0; b.Loop(); i++ {
		_ = tmpl.rewrite(1, ids, now, rng, DefaultUsers, uint64(i))
	}
}
