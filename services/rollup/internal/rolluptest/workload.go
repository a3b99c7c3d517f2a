package rolluptest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// EventTypes are the types a Workload's events have.
var EventTypes = []string{"page_view", "checkout"}

// Workload is a reproducible stream of many tenants' events in ingest
// batches. Every event ID is unique within its tenant, and event times
// spread over several minutes, so what the rollups must hold is known
// bucket by bucket.
type Workload struct {
	// Batches are the batches in production order; each is one tenant's.
	Batches []Batch

	want map[Bucket]int64
	keys map[DedupKey]struct{}
	rng  *rand.Rand
	per  int
}

// Batch is one tenant's events, produced as one Produce call.
type Batch struct {
	Tenant tenancy.ID
	Events []*ingestv1.Event
}

// Bucket is one rollup row's key.
type Bucket struct {
	Tenant tenancy.ID
	Type   string
	Minute time.Time
}

// DedupKey is one event's dedup key.
type DedupKey struct {
	Tenant  tenancy.ID
	EventID string
}

// NewWorkload returns events events of tenants tenants ("tenant-00", …),
// in batches of up to perBatch events of one tenant, with times over
// minutes minutes from EventTime. seed makes it reproducible.
func NewWorkload(seed uint64, tenants, events, perBatch, minutes int) *Workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &Workload{want: make(map[Bucket]int64), keys: make(map[DedupKey]struct{}), rng: rng, per: perBatch}
	pending := make([][]*ingestv1.Event, tenants)
	flush := func(i int) {
		if len(pending[i]) > 0 {
			w.Batches = append(w.Batches, Batch{Tenant: TenantID(i), Events: pending[i]})
			pending[i] = nil
		}
	}
	for n := range events {
		i := rng.IntN(tenants)
		tenant := TenantID(i)
		typ := EventTypes[rng.IntN(len(EventTypes))]
		minute := EventTime.Add(time.Duration(rng.IntN(minutes)) * time.Minute)
		ev := &ingestv1.Event{
			EventId:   fmt.Sprintf("ev-%07d", n),
			Type:      typ,
			UserId:    fmt.Sprintf("user-%d", rng.IntN(1000)),
			Timestamp: timestamppb.New(minute.Add(time.Duration(rng.IntN(60_000)) * time.Millisecond)),
		}
		w.want[Bucket{tenant, typ, minute}]++
		w.keys[DedupKey{tenant, ev.EventId}] = struct{}{}
		pending[i] = append(pending[i], ev)
		if len(pending[i]) == perBatch {
			flush(i)
		}
	}
	for i := range pending {
		flush(i)
	}
	return w
}

// TenantID is the ID of a Workload's i-th tenant.
func TenantID(i int) tenancy.ID { return tenancy.ID(fmt.Sprintf("tenant-%02d", i)) }

// Retries returns a fraction of the workload's events again, as new
// batches: what clients retrying after a lost acknowledgement send. The
// events are identical to the originals, so the rollups must not change.
func (w *Workload) Retries(fraction float64) []Batch {
	byTenant := make(map[tenancy.ID][]*ingestv1.Event)
	for _, b := range w.Batches {
		for _, ev := range b.Events {
			if w.rng.Float64() < fraction {
				byTenant[b.Tenant] = append(byTenant[b.Tenant], ev)
			}
		}
	}
	var out []Batch
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		events := byTenant[tenant]
		for len(events) > 0 {
			n := min(len(events), w.per)
			out = append(out, Batch{Tenant: tenant, Events: events[:n]})
			events = events[n:]
		}
	}
	return out
}

// Want is the count every rollup bucket must hold.
func (w *Workload) Want() map[Bucket]int64 { return maps.Clone(w.want) }

// WantOf is what the rollups must hold after batches alone: the distinct
// events' counts per bucket, and their keys. (Event times must lie within
// a minute's first 60 seconds of their bucket, as EventTime-based ones do.)
func WantOf(batches ...[]Batch) (map[Bucket]int64, map[DedupKey]struct{}) {
	want := make(map[Bucket]int64)
	keys := make(map[DedupKey]struct{})
	for _, bs := range batches {
		for _, b := range bs {
			for _, ev := range b.Events {
				k := DedupKey{b.Tenant, ev.GetEventId()}
				if _, dup := keys[k]; dup {
					continue
				}
				keys[k] = struct{}{}
				want[Bucket{b.Tenant, ev.GetType(), ev.GetTimestamp().AsTime().Truncate(time.Minute)}]++
			}
		}
	}
	return want, keys
}

// Distinct is the number of distinct events.
func (w *Workload) Distinct() int { return len(w.keys) }

// Keys are the distinct events' dedup keys.
func (w *Workload) Keys() map[DedupKey]struct{} { return w.keys }

// CountEvents counts the events of batches.
func CountEvents(batches []Batch) int {
	n := 0
	for _, b := range batches {
		n += len(b.Events)
	}
	return n
}

// Producer writes one tenant's batch to the event log and returns once Kafka
// acknowledged it; *eventlog.Producer is one.
type Producer interface {
	Produce(ctx context.Context, tenant tenancy.ID, batch *eventlogv1.Batch) error
}

// RecordProducer writes event-log records (eventlog.NewRecord: the tenant
// key chooses the partition, as in production) with the client's default
// compression. The production producer's lz4 costs little normally but
// dominates everything under the race detector, so the large workloads use
// this one.
type RecordProducer struct{ cl *kgo.Client }

var _ Producer = (*RecordProducer)(nil)

// RecordProducer returns a RecordProducer on e's broker, closed when the
// test ends.
func (e *Env) RecordProducer(t testing.TB) *RecordProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers()...), kgo.ProducerLinger(2*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return &RecordProducer{cl: cl}
}

// Produce writes batch as one record and waits for the acknowledgement; its
// errors wrap eventlog.ErrUnavailable, like the production producer's.
func (p *RecordProducer) Produce(ctx context.Context, tenant tenancy.ID, batch *eventlogv1.Batch) error {
	r, err := eventlog.NewRecord(ctx, tenant, batch)
	if err != nil {
		return err
	}
	if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("%w: %w", eventlog.ErrUnavailable, err)
	}
	return nil
}

// EventLogProducer returns the production event-log producer (acks=all,
// idempotent, the tenant key chooses the partition) on e's broker, closed
// when the test ends.
func (e *Env) EventLogProducer(t testing.TB) *eventlog.Producer {
	t.Helper()
	p, err := eventlog.NewProducer(eventlog.ProducerConfig{Brokers: e.Kafka.Brokers()}, nil, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), Wait)
		defer cancel()
		_ = p.Close(ctx) // records still queued after a failed test are of no interest
	})
	return p
}

// ProduceAll produces batches with workers concurrent Produce calls,
// retrying a batch until Kafka acknowledges it (a broker restart fails
// some calls; the retry repeats their event IDs, as a client would) or ctx
// ends. pause, if set, runs between batches of each worker, to spread
// production over time.
func ProduceAll(ctx context.Context, p Producer, batches []Batch, workers int, pause func()) error {
	work := make(chan Batch)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range max(workers, 1) {
		wg.Go(func() {
			for b := range work {
				if err := produceOne(ctx, p, b); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if pause != nil {
					pause()
				}
			}
		})
	}
	for _, b := range batches {
		select {
		case work <- b:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

func produceOne(ctx context.Context, p Producer, b Batch) error {
	batch := &eventlogv1.Batch{Events: b.Events, ReceivedTime: timestamppb.New(EventTime.Add(time.Hour))}
	for {
		err := p.Produce(ctx, b.Tenant, batch)
		if err == nil {
			return nil
		}
		if !errors.Is(err, eventlog.ErrUnavailable) || ctx.Err() != nil {
			return fmt.Errorf("produce %d events of %s: %w", len(b.Events), b.Tenant, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("produce %d events of %s: %w", len(b.Events), b.Tenant, ctx.Err())
		}
	}
}

// BucketsContext reads every rollup bucket's count.
func (e *Env) BucketsContext(ctx context.Context) (map[Bucket]int64, error) {
	rows, err := e.DB.Pool().Query(ctx, `SELECT tenant_id, event_type, bucket, event_count FROM rollups_1m`)
	if err != nil {
		return nil, err
	}
	out := make(map[Bucket]int64)
	var (
		tenant, typ string
		minute      time.Time
		n           int64
	)
	_, err = pgx.ForEachRow(rows, []any{&tenant, &typ, &minute, &n}, func() error {
		out[Bucket{tenancy.ID(tenant), typ, minute.UTC()}] = n
		return nil
	})
	return out, err
}

// RequireBuckets polls until every rollup bucket holds exactly want (and
// no other bucket exists), then requires the raw events and the dedup
// table to hold exactly the distinct events: keys when given, else as many
// as want counts.
func (e *Env) RequireBuckets(t testing.TB, want map[Bucket]int64, keys map[DedupKey]struct{}) {
	t.Helper()
	e.RequireBucketsWithin(t, want, keys, Wait)
}

// RequireBucketsWithin is RequireBuckets with its own deadline, for
// workloads whose catching up takes longer than Wait.
func (e *Env) RequireBucketsWithin(t testing.TB, want map[Bucket]int64, keys map[DedupKey]struct{}, wait time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := e.BucketsContext(t.Context())
		if assert.NoError(c, err) {
			assert.Empty(c, diffBuckets(want, got), "rollup buckets that differ from the distinct events produced")
		}
	}, wait, 100*time.Millisecond)

	var total int64
	for _, n := range want {
		total += n
	}
	var events, dedup int64
	require.NoError(t, e.DB.Pool().QueryRow(t.Context(),
		`SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM `+e.DedupTable()+`)`).Scan(&events, &dedup))
	require.Equal(t, total, events, "raw events")
	require.Equal(t, total, dedup, "dedup keys")
	if keys == nil {
		return
	}
	rows, err := e.DB.Pool().Query(t.Context(), `SELECT tenant_id, event_id FROM `+e.DedupTable())
	require.NoError(t, err)
	var tenant, id string
	var missing, extra int
	seen := make(map[DedupKey]struct{}, len(keys))
	_, err = pgx.ForEachRow(rows, []any{&tenant, &id}, func() error {
		k := DedupKey{tenancy.ID(tenant), id}
		if _, ok := keys[k]; !ok {
			extra++
		}
		seen[k] = struct{}{}
		return nil
	})
	require.NoError(t, err)
	for k := range keys {
		if _, ok := seen[k]; !ok {
			missing++
		}
	}
	require.Zero(t, missing, "produced events missing from the dedup keys")
	require.Zero(t, extra, "dedup keys of events that were never produced")
}

// diffBuckets describes up to ten buckets where got differs from want,
// after a summary line.
func diffBuckets(want, got map[Bucket]int64) []string {
	var diffs []string
	var wantTotal, gotTotal int64
	for b, n := range want {
		wantTotal += n
		if got[b] != n {
			diffs = append(diffs, fmt.Sprintf("%s/%s/%s want %d got %d", b.Tenant, b.Type, b.Minute.Format("15:04"), n, got[b]))
		}
	}
	for b, n := range got {
		gotTotal += n
		if _, ok := want[b]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s/%s/%s want none got %d", b.Tenant, b.Type, b.Minute.Format("15:04"), n))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	summary := fmt.Sprintf("%d buckets differ, %d events counted of %d", len(diffs), gotTotal, wantTotal)
	return append([]string{summary}, diffs[:min(len(diffs), 10)]...)
}
