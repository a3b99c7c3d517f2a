package rollup

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

var (
	eventTime    = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	receivedTime = eventTime.Add(2 * time.Second)
)

// record returns the event-log record of tenant's events at partition and
// offset, as a poll would return it.
func record(t *testing.T, tenant tenancy.ID, partition int32, offset int64, events ...*ingestv1.Event) *kgo.Record {
	t.Helper()
	r, err := eventlog.NewRecord(t.Context(), tenant, &eventlogv1.Batch{
		Events: events, ReceivedTime: timestamppb.New(receivedTime),
	})
	require.NoError(t, err)
	r.Partition, r.Offset = partition, offset
	return r
}

func event(id string) *ingestv1.Event {
	return &ingestv1.Event{EventId: id, Type: "page_view", Timestamp: timestamppb.New(eventTime)}
}

func TestNewPollBatch(t *testing.T) {
	t.Parallel()
	value := 0.0 // a present zero must stay distinguishable from "no value"
	withValue := event("v")
	withValue.Value = &value
	withValue.UserId, withValue.SessionId = "u1", "s1"
	withValue.Properties = map[string]string{"plan": "pro"}

	garbage := record(t, "acme", 0, 11)
	garbage.Value = []byte("not a protobuf batch \xff\xff\xff")
	noTime := event("no-time")
	noTime.Timestamp = nil

	records := []*kgo.Record{
		record(t, "acme", 0, 10, event("a"), withValue),
		garbage,
		record(t, "globex", 1, 7, event("g")),
		record(t, "acme", 0, 12, event("b"), noTime), // one bad event poisons its record
		record(t, "acme", 0, 13, event("c")),
	}
	pb := newPollBatch("group", 4, records, 100)

	require.Len(t, pb.poison, 2)
	require.Same(t, garbage, pb.poison[0].record)
	require.Contains(t, pb.poison[0].reason, "value is not an encoded Batch")
	require.Equal(t, int64(12), pb.poison[1].record.Offset)
	require.Contains(t, pb.poison[1].reason, "time is zero")

	require.Len(t, pb.chunks, 1)
	ch := pb.chunks[0]
	require.Equal(t, 3, ch.ok)
	require.Equal(t, 2, ch.poison)
	require.Equal(t, records, ch.records)
	require.Equal(t, "group", ch.batch.Group)
	require.Equal(t, int32(4), ch.batch.Generation)
	require.ElementsMatch(t, []postgres.PartitionOffset{
		{Topic: eventlog.Topic, Partition: 0, NextOffset: 14},
		{Topic: eventlog.Topic, Partition: 1, NextOffset: 8},
	}, ch.batch.Offsets)
	require.Equal(t, map[string]map[int32]kgo.EpochOffset{
		eventlog.Topic: {0: {Epoch: -1, Offset: 10}, 1: {Epoch: -1, Offset: 7}},
	}, pb.rewindOffsets(0))

	ids := make([]string, len(ch.batch.Events))
	for i, e := range ch.batch.Events {
		ids[i] = e.EventID
		require.Equal(t, receivedTime, e.ReceivedAt)
		require.Equal(t, eventTime, e.Time)
	}
	require.Equal(t, []string{"a", "v", "g", "c"}, ids)
	require.Nil(t, ch.batch.Events[0].Value)
	require.Equal(t, postgres.Event{
		Tenant: "acme", EventID: "v", Type: "page_view", UserID: "u1", SessionID: "s1",
		Time: eventTime, ReceivedAt: receivedTime,
		Properties: map[string]string{"plan": "pro"}, Value: &value,
	}, ch.batch.Events[1])
	require.Equal(t, tenancy.ID("globex"), ch.batch.Events[2].Tenant)
}

// TestNewPollBatch_Chunks: a poll with more events than one transaction may
// hold is split into consecutive chunks whose offsets only grow.
func TestNewPollBatch_Chunks(t *testing.T) {
	t.Parallel()
	events := func(prefix string, n int) []*ingestv1.Event {
		out := make([]*ingestv1.Event, n)
		for i := range out {
			out[i] = event(prefix + strconv.Itoa(i))
		}
		return out
	}
	garbage := record(t, "acme", 0, 3)
	garbage.Value = []byte("garbage")
	records := []*kgo.Record{
		record(t, "acme", 0, 0, events("a", 3)...),
		record(t, "globex", 1, 0, events("g", 2)...), // 5 events: the first chunk is full
		record(t, "acme", 0, 1, events("b", 9)...),   // more than the bound on its own
		record(t, "acme", 0, 2, events("c", 1)...),
		garbage,
		record(t, "globex", 1, 1, events("h", 4)...),
	}
	pb := newPollBatch("group", 1, records, 5)
	require.Len(t, pb.poison, 1)

	type summary struct {
		events, ok, poison int
		offsets            map[int32]int64
	}
	var got []summary
	for _, ch := range pb.chunks {
		s := summary{events: len(ch.batch.Events), ok: ch.ok, poison: ch.poison, offsets: map[int32]int64{}}
		for _, o := range ch.batch.Offsets {
			s.offsets[o.Partition] = o.NextOffset
		}
		got = append(got, s)
	}
	require.Equal(t, []summary{
		{events: 5, ok: 2, offsets: map[int32]int64{0: 1, 1: 1}},
		{events: 9, ok: 1, offsets: map[int32]int64{0: 2}},
		{events: 5, ok: 2, poison: 1, offsets: map[int32]int64{0: 4, 1: 2}},
	}, got)

	require.Equal(t, map[string]map[int32]kgo.EpochOffset{
		eventlog.Topic: {0: {Epoch: -1, Offset: 1}, 1: {Epoch: -1, Offset: 1}},
	}, pb.rewindOffsets(1), "rewinding from chunk 1 re-reads everything after chunk 0")
	require.Equal(t, map[string]map[int32]kgo.EpochOffset{
		eventlog.Topic: {0: {Epoch: -1, Offset: 2}, 1: {Epoch: -1, Offset: 1}},
	}, pb.rewindOffsets(2))
}

func TestAppendBatchEvents(t *testing.T) {
	t.Parallel()
	recordTime := eventTime.Add(time.Minute)
	nan := func() *float64 { v := 0.0; v /= v; return &v }()
	tests := []struct {
		name     string
		batch    *eventlogv1.Batch
		wantErr  string
		received time.Time
	}{
		{
			name:     "received time from the batch",
			batch:    &eventlogv1.Batch{Events: []*ingestv1.Event{event("a")}, ReceivedTime: timestamppb.New(receivedTime)},
			received: receivedTime,
		},
		{
			name:     "received time falls back to the record timestamp",
			batch:    &eventlogv1.Batch{Events: []*ingestv1.Event{event("a")}},
			received: recordTime,
		},
		{
			name:  "empty batch",
			batch: &eventlogv1.Batch{},
		},
		{
			name:    "missing event id",
			batch:   &eventlogv1.Batch{Events: []*ingestv1.Event{event("a"), event("")}},
			wantErr: "event 1",
		},
		{
			name: "out of range timestamp",
			batch: &eventlogv1.Batch{Events: []*ingestv1.Event{{
				EventId: "a", Type: "t", Timestamp: &timestamppb.Timestamp{Seconds: 1 << 62},
			}}},
			wantErr: "time is zero or outside",
		},
		{
			name:    "NaN value",
			batch:   &eventlogv1.Batch{Events: []*ingestv1.Event{{EventId: "a", Type: "t", Timestamp: timestamppb.New(eventTime), Value: nan}}},
			wantErr: "not a finite number",
		},
		{
			name:    "NUL in a property",
			batch:   &eventlogv1.Batch{Events: []*ingestv1.Event{{EventId: "a", Type: "t", Timestamp: timestamppb.New(eventTime), Properties: map[string]string{"k": "a\x00b"}}}},
			wantErr: "property",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prior := []postgres.Event{{EventID: "prior"}}
			got, err := appendBatchEvents(prior, "acme", tt.batch, recordTime)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, errInvalidEvent)
				require.ErrorIs(t, err, postgres.ErrInvalidArgument)
				require.ErrorContains(t, err, tt.wantErr)
				require.Equal(t, prior, got)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, 1+len(tt.batch.GetEvents()))
			for _, e := range got[1:] {
				require.Equal(t, tt.received, e.ReceivedAt)
			}
		})
	}
}

func TestDeadLetterRecord(t *testing.T) {
	t.Parallel()
	src := &kgo.Record{
		Topic: eventlog.Topic, Partition: 3, Offset: 42,
		Key: []byte("acme"), Value: []byte("garbage"),
		Headers: []kgo.RecordHeader{
			{Key: eventlog.HeaderTenant, Value: []byte("acme")},
			{Key: HeaderDeadLetterReason, Value: []byte("from an earlier trip")},
		},
	}
	got := deadLetterRecord(poisonRecord{record: src, reason: "bad"})
	require.Equal(t, eventlog.DeadLetterTopic, got.Topic)
	require.Equal(t, src.Key, got.Key)
	require.Equal(t, src.Value, got.Value)
	require.Equal(t, []kgo.RecordHeader{
		{Key: eventlog.HeaderTenant, Value: []byte("acme")},
		{Key: HeaderDeadLetterReason, Value: []byte("bad")},
		{Key: HeaderSourceTopic, Value: []byte(eventlog.Topic)},
		{Key: HeaderSourcePartition, Value: []byte("3")},
		{Key: HeaderSourceOffset, Value: []byte("42")},
	}, got.Headers)
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	long := make([]byte, 0, 2*maxReasonBytes)
	for len(long) < 2*maxReasonBytes {
		long = append(long, "é"...) // two bytes: a cut can split it
	}
	got := reasonOf(errors.New("x" + string(long)))
	require.LessOrEqual(t, len(got), maxReasonBytes)
	require.Greater(t, len(got), maxReasonBytes-4)
	require.True(t, utf8.ValidString(got))
}

// FuzzNewPollBatch feeds arbitrary record values, keys and headers through
// the decoding path: it must never panic, every record must end up either
// applied or poison, and every event it lets through must be one the store
// accepts (otherwise one bad event would make the whole batch fail forever).
func FuzzNewPollBatch(f *testing.F) {
	valid, err := eventlog.NewRecord(f.Context(), "acme", &eventlogv1.Batch{
		Events: []*ingestv1.Event{event("a"), event("b")}, ReceivedTime: timestamppb.New(receivedTime),
	})
	require.NoError(f, err)
	f.Add(valid.Value, "acme", "acme", "1")
	f.Add([]byte("garbage"), "acme", "acme", "1")
	f.Add(valid.Value, "globex", "acme", "1")
	f.Add(valid.Value, "acme", "acme", "2")
	f.Add([]byte{}, "", "", "")
	f.Fuzz(func(t *testing.T, value []byte, key, tenantHeader, schemaHeader string) {
		r := &kgo.Record{
			Topic: eventlog.Topic, Key: []byte(key), Value: value,
			Headers: []kgo.RecordHeader{
				{Key: eventlog.HeaderTenant, Value: []byte(tenantHeader)},
				{Key: eventlog.HeaderSchema, Value: []byte(schemaHeader)},
			},
		}
		pb := newPollBatch("group", 1, []*kgo.Record{r, r}, 3)
		var ok, poison int
		for _, ch := range pb.chunks {
			ok += ch.ok
			poison += ch.poison
			for _, e := range ch.batch.Events {
				require.NoError(t, e.Validate())
			}
		}
		require.Equal(t, 2, ok+poison)
		require.Len(t, pb.poison, poison)
		for _, p := range pb.poison {
			require.LessOrEqual(t, len(p.reason), maxReasonBytes)
			require.True(t, utf8.ValidString(p.reason))
		}
	})
}

func TestSplitLanes(t *testing.T) {
	t.Parallel()
	rec := func(p int32, off int64) *kgo.Record {
		return &kgo.Record{Topic: "t", Partition: p, Offset: off}
	}
	// Partition 0 has 3 records, 1 has 2, 2 has 1, 3 has 1; poll order mixed.
	records := []*kgo.Record{rec(1, 10), rec(0, 5), rec(2, 7), rec(0, 6), rec(1, 11), rec(3, 1), rec(0, 7)}
	positions := func(lanes [][]*kgo.Record) [][]string {
		var out [][]string
		for _, lane := range lanes {
			var l []string
			for _, r := range lane {
				l = append(l, fmt.Sprintf("%d@%d", r.Partition, r.Offset))
			}
			out = append(out, l)
		}
		return out
	}

	require.Equal(t, [][]string{{"1@10", "0@5", "2@7", "0@6", "1@11", "3@1", "0@7"}}, positions(splitLanes(records, 1)),
		"one lane is the poll as it is")
	require.Equal(t, [][]string{{"0@5", "0@6", "0@7", "3@1"}, {"1@10", "1@11", "2@7"}}, positions(splitLanes(records, 2)),
		"largest partition first, to the emptiest lane (the first of equals); each partition's records in order")
	require.Equal(t, [][]string{{"0@5", "0@6", "0@7"}, {"1@10", "1@11"}, {"2@7", "3@1"}}, positions(splitLanes(records, 3)))
	require.Len(t, splitLanes(records, 64), 4, "no more lanes than partitions")
	require.Len(t, splitLanes(records[:1], 8), 1)
}
