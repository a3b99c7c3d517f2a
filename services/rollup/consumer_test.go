package rollup_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Metric names, as dashboards and alerts use them.
const (
	mEvents  = "abacus_rollup_events_total"
	mRecords = "abacus_rollup_records_total"
	mBatch   = "abacus_rollup_batch_seconds"
	mLag     = "abacus_rollup_partition_lag"
	mFenced  = "abacus_rollup_fenced_batches_total"

	mWatermarkAge   = "abacus_rollup_watermark_age_seconds"
	mSketchesMerged = "abacus_rollup_coarse_sketches_merged_total"
)

func TestNew(t *testing.T) {
	t.Parallel()
	store := nopStore{}
	valid := rollup.Config{Brokers: []string{"127.0.0.1:1"}}

	_, err := rollup.New(rollup.Config{}, store, nil, nil)
	require.ErrorIs(t, err, rollup.ErrInvalidConfig)

	_, err = rollup.New(valid, nil, nil, nil)
	require.ErrorIs(t, err, rollup.ErrInvalidConfig)

	reg := prometheus.NewRegistry()
	_, err = rollup.New(valid, store, nil, reg)
	require.NoError(t, err)
	_, err = rollup.New(valid, store, nil, reg)
	require.Error(t, err, "a second consumer on the same registry")

	// Nothing starts in New, and a Consumer runs once.
	c, err := rollup.New(valid, store, nil, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, c.Run(ctx), "clean shutdown")
	require.ErrorIs(t, c.Run(t.Context()), rollup.ErrAlreadyRunning)
}

// TestConsumer_CountsEveryTenantExactlyOnce runs the whole path: records of
// several tenants on several partitions, polled in batches smaller than the
// backlog, end up as per-tenant rollups that equal the distinct events.
func TestConsumer_CountsEveryTenantExactlyOnce(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 3)
	tenants := []tenancy.ID{"acme", "globex", "initech", "umbrella"}
	want := make(map[tenancy.ID]int64)
	records := 0
	for i, tenant := range tenants {
		for b := range 10 {
			n := 1 + (i+b)%5
			env.Produce(t, int32(i%3), tenant, rolluptest.Events(fmt.Sprintf("%s-%d", tenant, b), n)...)
			want[tenant] += int64(n)
			records++
		}
	}
	// One tenant on two partitions (a sharded key will do this).
	env.Produce(t, 2, "acme", rolluptest.Events("acme-elsewhere", 3)...)
	want["acme"] += 3
	records++
	// Values are summed only where present.
	one, two := 1.0, 2.0
	valued := []*ingestv1.Event{rolluptest.Event("v1"), rolluptest.Event("v2"), rolluptest.Event("v3")}
	valued[0].Value, valued[1].Value = &one, &two
	valued[2].Type = "checkout"
	valued[0].UserId, valued[2].UserId = "u1", "u2" // users: their hours and days get sketches
	env.Produce(t, 1, "globex", valued...)
	want["globex"] += 3
	records++

	r := env.Start(t, rollup.Config{MaxPollRecords: 7, MaxBatchEvents: 6}, nil)
	env.RequireCounts(t, want)

	var total int64
	for _, n := range want {
		total += n
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, float64(total), r.Metric(mEvents, "result", "inserted"))
		assert.Equal(c, float64(records), r.Metric(mRecords, "result", "ok"))
		assert.Equal(c, 0.0, r.Metric(mLag), "lag once caught up")
	}, rolluptest.Wait, rolluptest.Tick)
	require.Zero(t, r.Metric(mEvents, "result", "duplicate"))
	require.Zero(t, r.Metric(mRecords, "result", "poison"))
	require.Greater(t, r.Metric(mBatch), 1.0, "several batches")

	// The hourly and daily unique-user sketches the batches left pending
	// are merged in the background.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var pending int
		assert.NoError(c, env.DB.Pool().QueryRow(t.Context(),
			`SELECT (SELECT count(*) FROM rollups_1h WHERE users_pending) + (SELECT count(*) FROM rollups_1d WHERE users_pending)`,
		).Scan(&pending))
		assert.Zero(c, pending)
		assert.Positive(c, r.Metric(mSketchesMerged))
	}, rolluptest.Wait, rolluptest.Tick)

	// Per-tenant reads see only their tenant's rows.
	for _, tenant := range tenants {
		points, err := env.DB.TimeSeriesCount(t.Context(), tenant, "page_view",
			rolluptest.EventTime, rolluptest.EventTime.Add(time.Minute), postgres.GranularityMinute)
		require.NoError(t, err)
		wantPageViews := want[tenant]
		if tenant == "globex" {
			wantPageViews-- // its checkout event
		}
		require.Len(t, points, 1, tenant)
		require.Equal(t, rolluptest.EventTime, points[0].Time, tenant)
		require.Equal(t, float64(wantPageViews), points[0].Value, tenant)
	}
	var sum float64
	var withValue int64
	require.NoError(t, env.DB.Pool().QueryRow(t.Context(),
		`SELECT value_sum, value_count FROM rollups_1m WHERE tenant_id = 'globex' AND event_type = 'page_view'`,
	).Scan(&sum, &withValue))
	require.Equal(t, 3.0, sum)
	require.Equal(t, int64(2), withValue)

	// The stored offsets are the ends of the partitions.
	require.Equal(t, map[int32]int64{0: 20, 1: 11, 2: 11}, env.StoredOffsets(t, rollup.DefaultGroup))
}

// TestConsumer_Duplicates: client retries (the same event IDs in new
// records) and repeats inside one record count once; the dedup key is per
// tenant, so another tenant's identical ID counts separately.
func TestConsumer_Duplicates(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 2)
	env.Produce(t, 0, "acme", rolluptest.Events("e", 5)...)
	env.Produce(t, 0, "acme", rolluptest.Events("e", 5)...) // a client retry of all five
	env.Produce(t, 1, "acme", rolluptest.Events("e", 3)...) // a retry landing on another partition
	env.Produce(t, 0, "acme", rolluptest.Event("x"), rolluptest.Event("x"), rolluptest.Event("y"))
	env.Produce(t, 1, "globex", rolluptest.Events("e", 2)...)

	r := env.Start(t, rollup.Config{MaxPollRecords: 2}, nil)
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 7, "globex": 2})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 9.0, r.Metric(mEvents, "result", "inserted"))
		assert.Equal(c, 9.0, r.Metric(mEvents, "result", "duplicate"))
	}, rolluptest.Wait, rolluptest.Tick)

	// A retry arriving after everything was counted changes nothing.
	env.Produce(t, 1, "acme", rolluptest.Events("e", 5)...)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 14.0, r.Metric(mEvents, "result", "duplicate"))
	}, rolluptest.Wait, rolluptest.Tick)
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 7, "globex": 2})
}

// TestConsumer_ResumesFromDatabaseOffsets stops a consumer in the middle of
// the stream with a batch in flight, tampers with the group's Kafka offsets,
// and starts a new consumer in the same group: it resumes exactly at the
// database offsets — nothing read twice, nothing skipped.
func TestConsumer_ResumesFromDatabaseOffsets(t *testing.T) {
	t.Parallel()
	const perPartition = 15
	tests := []struct {
		name   string
		tamper func(t *testing.T, adm *kadm.Client, group string, stored map[int32]int64)
	}{
		{name: "kafka offsets as committed"},
		{
			name: "kafka offsets rewound to zero",
			tamper: func(t *testing.T, adm *kadm.Client, group string, _ map[int32]int64) {
				var os kadm.Offsets
				os.AddOffset(eventlog.Topic, 0, 0, -1)
				os.AddOffset(eventlog.Topic, 1, 0, -1)
				require.NoError(t, adm.CommitAllOffsets(t.Context(), group, os))
			},
		},
		{
			name: "kafka offsets ahead of the database",
			tamper: func(t *testing.T, adm *kadm.Client, group string, _ map[int32]int64) {
				var os kadm.Offsets
				os.AddOffset(eventlog.Topic, 0, perPartition, -1)
				os.AddOffset(eventlog.Topic, 1, perPartition, -1)
				require.NoError(t, adm.CommitAllOffsets(t.Context(), group, os))
			},
		},
		{
			name: "kafka offsets deleted",
			tamper: func(t *testing.T, adm *kadm.Client, group string, _ map[int32]int64) {
				var ts kadm.TopicsSet
				ts.Add(eventlog.Topic, 0, 1)
				resp, err := adm.DeleteOffsets(t.Context(), group, ts)
				require.NoError(t, err)
				resp.EachError(func(topic string, p int32, err error) {
					require.NoError(t, err, "delete offset %s/%d", topic, p)
				})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := rolluptest.NewEnv(t, 2)
			const group = "resume"
			for i := range perPartition {
				env.Produce(t, 0, "acme", rolluptest.Event("a"+strconv.Itoa(i)))
				env.Produce(t, 1, "globex", rolluptest.Event("g"+strconv.Itoa(i)))
			}

			// Three batches commit, the fourth hangs until shutdown.
			stalling := newStallingStore(env.DB, 3)
			first := env.Start(t, rollup.Config{Group: group, MaxPollRecords: 4}, stalling)
			select {
			case <-stalling.stalled:
			case <-time.After(rolluptest.Wait):
				require.FailNow(t, "the consumer never reached its fourth batch")
			}
			first.Stop(t)

			stored := env.StoredOffsets(t, group)
			counts := env.Counts(t)
			require.Equal(t, stored[0], counts["acme"], "partition 0 carries acme, one event per record")
			require.Equal(t, stored[1], counts["globex"])
			require.Positive(t, stored[0]+stored[1], "three batches committed")
			require.Less(t, stored[0]+stored[1], int64(2*perPartition), "stopped mid-stream")

			if tt.tamper != nil {
				adm := kadm.NewClient(env.AdminClient(t))
				tt.tamper(t, adm, group, stored)
			}
			for i := perPartition; i < perPartition+5; i++ {
				env.Produce(t, 0, "acme", rolluptest.Event("a"+strconv.Itoa(i)))
				env.Produce(t, 1, "globex", rolluptest.Event("g"+strconv.Itoa(i)))
			}

			second := env.Start(t, rollup.Config{Group: group, MaxPollRecords: 4}, nil)
			env.RequireCounts(t, map[tenancy.ID]int64{"acme": perPartition + 5, "globex": perPartition + 5})
			remaining := float64(2*(perPartition+5)) - float64(stored[0]+stored[1])
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Equal(c, remaining, second.Metric(mEvents, "result", "inserted"))
			}, rolluptest.Wait, rolluptest.Tick)
			require.Zero(t, second.Metric(mEvents, "result", "duplicate"), "started at the database offsets, not before")
			require.Equal(t, remaining, second.Metric(mRecords, "result", "ok"), "read each remaining record once")
		})
	}
}

// TestConsumer_PoisonRecordsGoToDeadLetterTopic: records that can never be
// applied are dead-lettered with their reason and position, and the records
// after them on the same partition are counted.
func TestConsumer_PoisonRecordsGoToDeadLetterTopic(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 1)

	garbage := rolluptest.Record(t, 0, "acme", rolluptest.Event("lost-1"))
	garbage.Value = []byte("\xff\xfe not a protobuf")
	wrongSchema := rolluptest.Record(t, 0, "acme", rolluptest.Event("lost-2"))
	setHeader(wrongSchema, eventlog.HeaderSchema, "99")
	wrongTenant := rolluptest.Record(t, 0, "acme", rolluptest.Event("lost-3"))
	wrongTenant.Key = []byte("globex")
	noTime := rolluptest.Event("lost-4")
	noTime.Timestamp = nil
	badEvent := rolluptest.Record(t, 0, "acme", rolluptest.Event("lost-5"), noTime)

	env.Produce(t, 0, "acme", rolluptest.Events("before", 2)...) // offset 0
	poison := []struct {
		record *kgo.Record
		reason string
	}{
		{garbage, "value is not an encoded Batch"},  // offset 1
		{wrongSchema, "header abacus-schema is"},    // offset 2
		{wrongTenant, "does not match header"},      // offset 3
		{badEvent, "time is zero or outside years"}, // offset 4
	}
	for _, p := range poison {
		env.ProduceRecords(t, p.record)
	}
	env.Produce(t, 0, "acme", rolluptest.Events("after", 3)...) // offset 5

	r := env.Start(t, rollup.Config{}, nil)
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 5})
	require.Equal(t, map[int32]int64{0: 6}, env.StoredOffsets(t, rollup.DefaultGroup))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 4.0, r.Metric(mRecords, "result", "poison"))
		assert.Equal(c, 2.0, r.Metric(mRecords, "result", "ok"))
	}, rolluptest.Wait, rolluptest.Tick)

	dead := env.ReadTopic(t, eventlog.DeadLetterTopic, len(poison))
	require.Len(t, dead, len(poison))
	for i, d := range dead {
		want := poison[i]
		require.Equal(t, strconv.Itoa(i+1), rolluptest.Header(d, rollup.HeaderSourceOffset))
		require.Equal(t, "0", rolluptest.Header(d, rollup.HeaderSourcePartition))
		require.Equal(t, eventlog.Topic, rolluptest.Header(d, rollup.HeaderSourceTopic))
		require.Contains(t, rolluptest.Header(d, rollup.HeaderDeadLetterReason), want.reason)
		require.Equal(t, want.record.Key, d.Key, "original key kept")
		require.Equal(t, want.record.Value, d.Value, "original value kept")
		require.Equal(t, rolluptest.Header(want.record, eventlog.HeaderSchema), rolluptest.Header(d, eventlog.HeaderSchema))
	}
}

// TestConsumer_FencedBatchIsRefusedAndReread simulates a stale member: two
// consumers share the group, then one of them writes with an older
// generation. The database refuses its batches (nothing counted, offsets
// untouched); once it writes with its real generation again it re-reads the
// refused records instead of skipping them, and the totals are exact.
func TestConsumer_FencedBatchIsRefusedAndReread(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 2)
	const group = "fencing"
	produce := func(prefix string) {
		env.Produce(t, 0, "acme", rolluptest.Events("a-"+prefix, 5)...)
		env.Produce(t, 1, "globex", rolluptest.Events("g-"+prefix, 5)...)
	}

	stale := &staleStore{Store: env.DB}
	a := env.Start(t, rollup.Config{Group: group}, stale)
	produce("1")
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 5, "globex": 5})

	b := env.Start(t, rollup.Config{Group: group}, nil)
	env.RequireGroupBalanced(t, group, 2)

	// Both partitions' offsets now carry the current generation.
	produce("2")
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 10, "globex": 10})
	before := env.StoredOffsets(t, group)
	require.Equal(t, map[int32]int64{0: 2, 1: 2}, before)

	stale.set(true)
	produce("3")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, a.Metric(mFenced), 2.0, "refused, re-read and refused again")
		counts, err := env.CountsContext(t.Context())
		if assert.NoError(c, err) {
			assert.Equal(c, int64(25), counts["acme"]+counts["globex"], "only the current member's partition advanced")
		}
	}, rolluptest.Wait, rolluptest.Tick)
	after := env.StoredOffsets(t, group)
	require.ElementsMatch(t, []int64{2, 3}, []int64{after[0], after[1]}, "the fenced partition's offset did not move")
	require.Zero(t, b.Metric(mFenced))

	stale.set(false)
	env.RequireCounts(t, map[tenancy.ID]int64{"acme": 15, "globex": 15})
	require.Equal(t, map[int32]int64{0: 3, 1: 3}, env.StoredOffsets(t, group))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 30.0, a.Metric(mEvents, "result", "inserted")+b.Metric(mEvents, "result", "inserted"))
	}, rolluptest.Wait, rolluptest.Tick)
	require.Zero(t, a.Metric(mEvents, "result", "duplicate")+b.Metric(mEvents, "result", "duplicate"),
		"no record applied twice")
	require.False(t, a.Returned())
	require.False(t, b.Returned())
}

func setHeader(r *kgo.Record, key, value string) {
	for i, h := range r.Headers {
		if h.Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// stallingStore passes the first n ApplyBatch calls with events through
// (and every one without, and every partition claim) and holds later ones until
// their context ends: a consumer stopped with a batch in flight.
type stallingStore struct {
	rollup.Store
	left    atomic.Int64
	once    sync.Once
	stalled chan struct{}
}

func newStallingStore(s rollup.Store, n int64) *stallingStore {
	st := &stallingStore{Store: s, stalled: make(chan struct{})}
	st.left.Store(n)
	return st
}

func (s *stallingStore) ApplyBatch(ctx context.Context, b postgres.Batch) (postgres.Applied, error) {
	if len(b.Events) == 0 || s.left.Add(-1) >= 0 {
		return s.Store.ApplyBatch(ctx, b)
	}
	s.once.Do(func() { close(s.stalled) })
	<-ctx.Done()
	return postgres.Applied{}, ctx.Err()
}

// staleStore writes with the generation before the consumer's own while set:
// the consumer behaves like a member that has not noticed a rebalance.
type staleStore struct {
	rollup.Store
	stale atomic.Bool
}

func (s *staleStore) set(stale bool) { s.stale.Store(stale) }

func (s *staleStore) ApplyBatch(ctx context.Context, b postgres.Batch) (postgres.Applied, error) {
	if s.stale.Load() {
		b.Generation--
	}
	return s.Store.ApplyBatch(ctx, b)
}

// nopStore is a Store for tests that never reach it.
type nopStore struct{}

func (nopStore) ApplyBatch(context.Context, postgres.Batch) (postgres.Applied, error) {
	return postgres.Applied{}, nil
}

func (nopStore) ClaimPartitions(context.Context, string, string, int32, []int32) (map[int32]int64, error) {
	return nil, nil
}

func (nopStore) AdvanceWatermarks(context.Context, string, string, int32, map[int32]time.Time) error {
	return nil
}

func (nopStore) MergeCoarseSketches(context.Context, int) (int, error) {
	return 0, nil
}
