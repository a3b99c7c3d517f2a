package postgres_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

const topic = "abacus.events.v1"

// event builds a valid event of type "click" at minute+offset.
func event(tenant tenancy.ID, id string, offset time.Duration) postgres.Event {
	return postgres.Event{
		Tenant: tenant, EventID: id, Type: "click", UserID: "u1", SessionID: "s1",
		Time: minute.Add(offset), ReceivedAt: minute.Add(offset + time.Second),
		Properties: map[string]string{"plan": "pro"},
	}
}

// rollup is a row of rollups_1m as tests read it back.
type rollup struct {
	Tenant     tenancy.ID
	Type       string
	Bucket     time.Time
	Count      int64
	Sum        float64
	ValueCount int64
	Min, Max   *float64
}

func readRollups(t *testing.T, db *postgres.DB) []rollup {
	t.Helper()
	rows, err := db.Pool().Query(t.Context(), `
SELECT tenant_id, event_type, bucket, event_count, value_sum, value_count, value_min, value_max
FROM rollups_1m ORDER BY tenant_id, event_type, bucket`)
	require.NoError(t, err)
	defer rows.Close()
	var out []rollup
	for rows.Next() {
		var r rollup
		var tenant string
		require.NoError(t, rows.Scan(&tenant, &r.Type, &r.Bucket, &r.Count, &r.Sum, &r.ValueCount, &r.Min, &r.Max))
		r.Tenant = tenancy.ID(tenant)
		r.Bucket = r.Bucket.UTC()
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func countRows(t *testing.T, db *postgres.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

// dedupTable is the table whose primary key is the exactly-once key:
// events on plain PostgreSQL, event_dedup on TimescaleDB (migration 004).
func dedupTable(db *postgres.DB) string {
	if db.Timescale() {
		return "event_dedup"
	}
	return "events"
}

func TestApplyBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		batches     [][]postgres.Event
		wantApplied []postgres.Applied
		wantRollups []rollup
	}{
		{
			name: "counts distinct events per minute",
			batches: [][]postgres.Event{{
				event("acme", "e1", 0), event("acme", "e2", 10*time.Second), event("acme", "e3", 70*time.Second),
			}},
			wantApplied: []postgres.Applied{{Inserted: 3, Buckets: []postgres.ChangedBucket{
				{Tenant: "acme", Type: "click", Bucket: minute},
				{Tenant: "acme", Type: "click", Bucket: minute.Add(time.Minute)},
			}}},
			wantRollups: []rollup{
				{Tenant: "acme", Type: "click", Bucket: minute, Count: 2},
				{Tenant: "acme", Type: "click", Bucket: minute.Add(time.Minute), Count: 1},
			},
		},
		{
			name: "replaying a batch adds nothing",
			batches: [][]postgres.Event{
				{event("acme", "e1", 0), event("acme", "e2", 0)},
				{event("acme", "e1", 0), event("acme", "e2", 0)},
				{event("acme", "e2", 0), event("acme", "e3", 0)},
			},
			wantApplied: []postgres.Applied{
				{Inserted: 2, Buckets: []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: minute}}},
				{Duplicates: 2},
				{Inserted: 1, Duplicates: 1, Buckets: []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: minute}}},
			},
			wantRollups: []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 3}},
		},
		{
			name: "duplicates inside one batch count once, first copy wins",
			batches: [][]postgres.Event{{
				event("acme", "e1", 0), event("acme", "e1", 0),
				func() postgres.Event { e := event("acme", "e1", 5*time.Minute); e.Type = "view"; return e }(),
			}},
			wantApplied: []postgres.Applied{{Inserted: 1, Duplicates: 2, Buckets: []postgres.ChangedBucket{
				{Tenant: "acme", Type: "click", Bucket: minute},
			}}},
			wantRollups: []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 1}},
		},
		{
			name: "tenants are isolated: the same event ID is distinct per tenant",
			batches: [][]postgres.Event{{
				event("acme", "e1", 0), event("globex", "e1", 0), event("globex", "e2", 0),
			}},
			wantApplied: []postgres.Applied{{Inserted: 3, Buckets: []postgres.ChangedBucket{
				{Tenant: "acme", Type: "click", Bucket: minute},
				{Tenant: "globex", Type: "click", Bucket: minute},
			}}},
			wantRollups: []rollup{
				{Tenant: "acme", Type: "click", Bucket: minute, Count: 1},
				{Tenant: "globex", Type: "click", Bucket: minute, Count: 2},
			},
		},
		{
			name: "values aggregate sum, count, min and max",
			batches: [][]postgres.Event{
				{withValue(event("acme", "e1", 0), 2.5), event("acme", "e2", 0), withValue(event("acme", "e3", 0), -1)},
				{withValue(event("acme", "e4", 0), 10), withValue(event("acme", "e1", 0), 1000)},
			},
			wantApplied: []postgres.Applied{
				{Inserted: 3, Buckets: []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: minute}}},
				{Inserted: 1, Duplicates: 1, Buckets: []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: minute}}},
			},
			wantRollups: []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 4, Sum: 11.5, ValueCount: 3, Min: ptr(-1.0), Max: ptr(10.0)}},
		},
		{
			name: "minutes are UTC whatever the event's zone",
			batches: [][]postgres.Event{{func() postgres.Event {
				e := event("acme", "e1", 30*time.Second)
				e.Time = e.Time.In(time.FixedZone("odd", 5*3600+45*60+17))
				return e
			}()}},
			wantApplied: []postgres.Applied{{Inserted: 1, Buckets: []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: minute}}}},
			wantRollups: []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 1}},
		},
		{
			name:        "empty event list",
			batches:     [][]postgres.Event{nil},
			wantApplied: []postgres.Applied{{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			for i, events := range tt.batches {
				got, err := db.ApplyBatch(t.Context(), postgres.Batch{
					Group: "rollup", Generation: 1, Events: events,
					Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: int64(i+1) * 100}},
				})
				require.NoError(t, err)
				require.Equal(t, tt.wantApplied[i], got, "batch %d", i)
			}
			require.Equal(t, tt.wantRollups, readRollups(t, db))
			offsets, err := db.LoadOffsets(t.Context(), "rollup", topic)
			require.NoError(t, err)
			require.Equal(t, map[int32]int64{0: int64(len(tt.batches)) * 100}, offsets)

			var distinct int
			for _, r := range tt.wantRollups {
				distinct += int(r.Count)
			}
			require.Equal(t, distinct, countRows(t, db, "events"), "raw events are stored once")
			require.Equal(t, distinct, countRows(t, db, dedupTable(db)))
		})
	}
}

func withValue(e postgres.Event, v float64) postgres.Event {
	e.Value = &v
	return e
}

func TestApplyBatchStoresRawEvents(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	e := withValue(event("acme", "e1", 0), 4.25)
	e.Properties = map[string]string{"country": "NZ", "quote": `"'\`}
	noProps := event("acme", "e2", 0)
	noProps.Properties = nil
	_, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: []postgres.Event{e, noProps}})
	require.NoError(t, err)

	var (
		typ, user, session string
		eventTime, recv    time.Time
		props              map[string]string
		value              *float64
	)
	require.NoError(t, db.Pool().QueryRow(t.Context(), `
SELECT event_type, user_id, session_id, event_time, received_at, properties, value
FROM events WHERE tenant_id = 'acme' AND event_id = 'e1'`).
		Scan(&typ, &user, &session, &eventTime, &recv, &props, &value))
	require.Equal(t, "click", typ)
	require.Equal(t, "u1", user)
	require.Equal(t, "s1", session)
	require.True(t, e.Time.Equal(eventTime))
	require.True(t, e.ReceivedAt.Equal(recv))
	require.Equal(t, e.Properties, props)
	require.Equal(t, 4.25, *value)

	require.NoError(t, db.Pool().QueryRow(t.Context(), `
SELECT properties, value FROM events WHERE tenant_id = 'acme' AND event_id = 'e2'`).Scan(&props, &value))
	require.Equal(t, map[string]string{}, props)
	require.Nil(t, value)
}

func TestApplyBatchInvalid(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	tests := []struct {
		name  string
		batch postgres.Batch
	}{
		{"offsets without group", postgres.Batch{Offsets: []postgres.PartitionOffset{{Topic: topic}}}},
		{"event without ID", postgres.Batch{Events: []postgres.Event{event("acme", "", 0)}}},
		{"event without tenant", postgres.Batch{Events: []postgres.Event{event("", "e1", 0)}}},
		{"event without type", postgres.Batch{Events: []postgres.Event{func() postgres.Event { e := event("acme", "e1", 0); e.Type = ""; return e }()}}},
		{"event without time", postgres.Batch{Events: []postgres.Event{func() postgres.Event { e := event("acme", "e1", 0); e.Time = time.Time{}; return e }()}}},
		{"NUL in user ID", postgres.Batch{Events: []postgres.Event{func() postgres.Event { e := event("acme", "e1", 0); e.UserID = "a\x00b"; return e }()}}},
		{"invalid UTF-8 property", postgres.Batch{Events: []postgres.Event{func() postgres.Event {
			e := event("acme", "e1", 0)
			e.Properties = map[string]string{"k": "\xff"}
			return e
		}()}}},
		{"NaN value", postgres.Batch{Events: []postgres.Event{withValue(event("acme", "e1", 0), math.NaN())}}},
		{"infinite value", postgres.Batch{Events: []postgres.Event{withValue(event("acme", "e1", 0), math.Inf(1))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := db.ApplyBatch(t.Context(), tt.batch)
			require.ErrorIs(t, err, postgres.ErrInvalidArgument)
		})
	}
	require.Zero(t, countRows(t, db, dedupTable(db)))
	require.Zero(t, countRows(t, db, "consumer_offsets"))
}

func TestApplyBatchFencing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	batch := func(gen int32, next int64, ids ...string) postgres.Batch {
		b := postgres.Batch{Group: "rollup", Generation: gen, Offsets: []postgres.PartitionOffset{
			{Topic: topic, Partition: 0, NextOffset: next}, {Topic: topic, Partition: 1, NextOffset: next},
		}}
		for _, id := range ids {
			b.Events = append(b.Events, event("acme", id, 0))
		}
		return b
	}

	_, err := db.ApplyBatch(t.Context(), batch(2, 10, "e1"))
	require.NoError(t, err, "generation 2 commits")

	_, err = db.ApplyBatch(t.Context(), batch(1, 20, "e2", "e3"))
	require.ErrorIs(t, err, postgres.ErrFenced, "the older generation is refused")
	require.ErrorContains(t, err, topic+"/0")

	// Refused means no trace: no events, no dedup keys, no rollups, no offsets.
	require.Equal(t, 1, countRows(t, db, "events"))
	require.Equal(t, 1, countRows(t, db, dedupTable(db)))
	require.Equal(t, []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 1}}, readRollups(t, db))
	offsets, err := db.LoadOffsets(t.Context(), "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 10, 1: 10}, offsets)

	// Fenced on one partition is fenced on all: partition 2 is new, 1 is not.
	mixed := batch(1, 30, "e2")
	mixed.Offsets = []postgres.PartitionOffset{{Topic: topic, Partition: 2, NextOffset: 30}, {Topic: topic, Partition: 1, NextOffset: 30}}
	_, err = db.ApplyBatch(t.Context(), mixed)
	require.ErrorIs(t, err, postgres.ErrFenced)
	offsets, err = db.LoadOffsets(t.Context(), "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 10, 1: 10}, offsets)

	// The same and newer generations commit; e2 was never counted, so it is new.
	applied, err := db.ApplyBatch(t.Context(), batch(2, 40, "e1", "e2"))
	require.NoError(t, err)
	require.Equal(t, 1, applied.Inserted)
	_, err = db.ApplyBatch(t.Context(), batch(3, 50))
	require.NoError(t, err)
	offsets, err = db.LoadOffsets(t.Context(), "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 50, 1: 50}, offsets)
	require.Equal(t, []rollup{{Tenant: "acme", Type: "click", Bucket: minute, Count: 2}}, readRollups(t, db))
}

func TestLoadOffsets(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	apply := func(group, topic string, gen int32, offsets ...postgres.PartitionOffset) {
		t.Helper()
		for i := range offsets {
			offsets[i].Topic = topic
		}
		_, err := db.ApplyBatch(t.Context(), postgres.Batch{Group: group, Generation: gen, Offsets: offsets})
		require.NoError(t, err)
	}
	apply("rollup", topic, 1, postgres.PartitionOffset{Partition: 0, NextOffset: 5}, postgres.PartitionOffset{Partition: 3, NextOffset: 7})
	apply("rollup", topic, 1, postgres.PartitionOffset{Partition: 3, NextOffset: 9}, postgres.PartitionOffset{Partition: 3, NextOffset: 8})
	apply("rollup", "other", 1, postgres.PartitionOffset{Partition: 0, NextOffset: 100})
	apply("other-group", topic, 7, postgres.PartitionOffset{Partition: 0, NextOffset: 200})

	tests := []struct {
		group, topic string
		want         map[int32]int64
	}{
		{"rollup", topic, map[int32]int64{0: 5, 3: 9}},
		{"rollup", "other", map[int32]int64{0: 100}},
		{"other-group", topic, map[int32]int64{0: 200}},
		{"never", topic, map[int32]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.group+"/"+tt.topic, func(t *testing.T) {
			t.Parallel()
			got, err := db.LoadOffsets(t.Context(), tt.group, tt.topic)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestApplyBatchConcurrent has several consumers apply overlapping batches at
// once, as after a rebalance or with a tenant spread over partitions. Every
// distinct event is counted exactly once, and no transaction deadlocks.
func TestApplyBatchConcurrent(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	const (
		workers  = 4
		batches  = 10
		perBatch = 50
		distinct = 300
	)
	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			for b := range batches {
				var events []postgres.Event
				for i := range perBatch {
					n := (w*7 + b*perBatch + i*13) % distinct
					tenant := tenancy.ID([]string{"acme", "globex"}[n%2])
					events = append(events, event(tenant, fmt.Sprintf("e%d", n), time.Duration(n%5)*time.Minute))
				}
				_, err := db.ApplyBatch(t.Context(), postgres.Batch{
					Group: "rollup", Generation: 1, Events: events,
					Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: int32(w), NextOffset: int64(b)}},
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())

	stored := countRows(t, db, dedupTable(db))
	var total int64
	for _, r := range readRollups(t, db) {
		total += r.Count
	}
	require.Equal(t, int64(stored), total, "rollups count every stored event exactly once")
	require.Equal(t, stored, countRows(t, db, "events"))
}
