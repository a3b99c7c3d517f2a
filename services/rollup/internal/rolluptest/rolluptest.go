// Package rolluptest is what the rollup consumer's integration tests share:
// a fresh database and broker per test, producing event-log records and
// whole workloads, running consumers and reading back counts and metrics.
package rolluptest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Wait bounds every condition a test polls for; Tick is the polling period.
const (
	Wait = 30 * time.Second
	Tick = 20 * time.Millisecond
)

// EventTime is the event time of every test event: a fixed minute, so all
// of a tenant's events of one type land in one rollup bucket.
var EventTime = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

// Env is one test's world: a fresh migrated database, a fresh broker with
// the event-log topics, and a producer that places records on the partition
// the test names.
type Env struct {
	DB *postgres.DB
	// DatabaseURL is DB's URL, for consumers in other processes.
	DatabaseURL string
	Kafka       *devstack.Kafka
	Partitions  int32
	producer    *kgo.Client
}

// Options configure [NewEnvWith].
type Options struct {
	// Partitions of the event-log topic; default 1.
	Partitions int32
	// KafkaDir, when set, persists the broker's state there, so that
	// Env.Kafka.Restart keeps topics, records and group state, as a real
	// broker restart does. Empty means memory only.
	KafkaDir string
	// KafkaOpts go to the broker after the defaults (which allow group
	// session timeouts down to MinSessionTimeout).
	KafkaOpts []kfake.Opt
}

// MinSessionTimeout is the shortest group session timeout the test broker
// accepts (a real broker's minimum is 6 s), so that tests can let a member
// expire quickly.
const MinSessionTimeout = 100 * time.Millisecond

// NewEnv builds an Env whose event-log topic has partitions partitions.
func NewEnv(t testing.TB, partitions int32) *Env {
	t.Helper()
	return NewEnvWith(t, Options{Partitions: partitions})
}

// NewEnvWith builds an Env as opts say.
func NewEnvWith(t testing.TB, opts Options) *Env {
	t.Helper()
	url := devstacktest.Postgres(t)
	db, err := postgres.Open(t.Context(), postgres.Config{URL: url}, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))

	partitions := max(opts.Partitions, 1)
	kopts := append([]kfake.Opt{kfake.GroupMinSessionTimeout(MinSessionTimeout)}, opts.KafkaOpts...)
	var k *devstack.Kafka
	if opts.KafkaDir == "" {
		k = devstacktest.Kafka(t, kopts...)
	} else {
		k, err = devstack.StartKafka(t.Context(), opts.KafkaDir, 0, LoggerAt(t, slog.LevelWarn), kopts...)
		require.NoError(t, err)
		t.Cleanup(k.Stop)
	}
	require.NoError(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), partitions, 1))
	producer, err := kgo.NewClient(
		kgo.SeedBrokers(k.Brokers()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	require.NoError(t, err)
	t.Cleanup(producer.Close)
	return &Env{DB: db, DatabaseURL: url, Kafka: k, Partitions: partitions, producer: producer}
}

// Event returns a page_view event at EventTime.
func Event(id string) *ingestv1.Event {
	return &ingestv1.Event{EventId: id, Type: "page_view", Timestamp: timestamppb.New(EventTime)}
}

// Events returns n events with IDs prefix-0 .. prefix-(n-1).
func Events(prefix string, n int) []*ingestv1.Event {
	out := make([]*ingestv1.Event, n)
	for i := range out {
		out[i] = Event(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// Record builds the event-log record of tenant's events for partition.
func Record(t testing.TB, partition int32, tenant tenancy.ID, events ...*ingestv1.Event) *kgo.Record {
	t.Helper()
	r, err := eventlog.NewRecord(t.Context(), tenant, &eventlogv1.Batch{
		Events: events, ReceivedTime: timestamppb.New(EventTime.Add(time.Second)),
	})
	require.NoError(t, err)
	r.Partition = partition
	return r
}

// Produce writes tenant's events as one record to partition and waits for
// the acknowledgement.
func (e *Env) Produce(t testing.TB, partition int32, tenant tenancy.ID, events ...*ingestv1.Event) {
	t.Helper()
	e.ProduceRecords(t, Record(t, partition, tenant, events...))
}

// ProduceRecords writes records as they are (Partition chooses the
// partition) and waits for the acknowledgements.
func (e *Env) ProduceRecords(t testing.TB, records ...*kgo.Record) {
	t.Helper()
	require.NoError(t, e.producer.ProduceSync(t.Context(), records...).FirstErr())
}

// AdminClient returns a plain client of e's broker (for kadm), closed when
// the test ends.
func (e *Env) AdminClient(t testing.TB) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers()...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// RequireGroupBalanced polls until the consumer group is stable with
// members members, each owning at least one partition.
func (e *Env) RequireGroupBalanced(t testing.TB, group string, members int) {
	t.Helper()
	adm := kadm.NewClient(e.AdminClient(t))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		groups, err := adm.DescribeGroups(t.Context(), group)
		if !assert.NoError(c, err) || !assert.NoError(c, groups.Error()) {
			return
		}
		g := groups[group]
		assert.Equal(c, "Stable", g.State)
		if !assert.Len(c, g.Members, members) {
			return
		}
		for _, m := range g.Members {
			if a, ok := m.Assigned.AsConsumer(); assert.True(c, ok) {
				assert.NotEmpty(c, a.Topics, "every member owns a partition")
			}
		}
	}, Wait, 100*time.Millisecond)
}

// Counts returns the rolled-up event count per tenant.
func (e *Env) Counts(t testing.TB) map[tenancy.ID]int64 {
	t.Helper()
	got, err := e.CountsContext(t.Context())
	require.NoError(t, err)
	return got
}

// CountsContext is Counts for polling goroutines, which must not fail the
// test themselves.
func (e *Env) CountsContext(ctx context.Context) (map[tenancy.ID]int64, error) {
	rows, err := e.DB.Pool().Query(ctx,
		`SELECT tenant_id, sum(event_count)::bigint FROM rollups_1m GROUP BY tenant_id`)
	if err != nil {
		return nil, err
	}
	out := make(map[tenancy.ID]int64)
	var (
		tenant string
		n      int64
	)
	_, err = pgx.ForEachRow(rows, []any{&tenant, &n}, func() error {
		out[tenancy.ID(tenant)] = n
		return nil
	})
	return out, err
}

// RequireCounts polls until the rolled-up counts equal want, then checks
// that the raw events and dedup keys agree with them.
func (e *Env) RequireCounts(t testing.TB, want map[tenancy.ID]int64) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := e.CountsContext(t.Context())
		if assert.NoError(c, err) {
			assert.Equal(c, want, got, "rollup counts per tenant")
		}
	}, Wait, Tick)

	var total int64
	for _, n := range want {
		total += n
	}
	var events, dedup int64
	require.NoError(t, e.DB.Pool().QueryRow(t.Context(),
		`SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM `+e.DedupTable()+`)`).Scan(&events, &dedup))
	require.Equal(t, total, events, "raw events")
	require.Equal(t, total, dedup, "dedup keys")
}

// DedupTable is the table whose primary key is the exactly-once key: events
// on plain PostgreSQL, event_dedup on TimescaleDB (see store/postgres).
func (e *Env) DedupTable() string {
	if e.DB.Timescale() {
		return "event_dedup"
	}
	return "events"
}

// StoredOffsets returns the group's offsets of the event-log topic in the
// database.
func (e *Env) StoredOffsets(t testing.TB, group string) map[int32]int64 {
	t.Helper()
	got, err := e.DB.LoadOffsets(t.Context(), group, eventlog.Topic)
	require.NoError(t, err)
	return got
}

// Running is a consumer running in the background of a test.
type Running struct {
	Consumer *rollup.Consumer
	Registry *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
	stopped  bool
}

// Start runs a consumer of e with cfg (Brokers are filled in) on store
// (nil: e.DB). The test's cleanup stops it.
func (e *Env) Start(t testing.TB, cfg rollup.Config, store rollup.Store) *Running {
	t.Helper()
	if store == nil {
		store = e.DB
	}
	cfg.Brokers = e.Kafka.Brokers()
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 20 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	c, err := rollup.New(cfg, store, Logger(t), reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	r := &Running{Consumer: c, Registry: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels the consumer and requires Run to return nil.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err, "Run after cancel")
	case <-time.After(Wait):
		require.FailNow(t, "Run did not return after cancel")
	}
}

// Returned reports whether Run has returned (it must not before Stop).
func (r *Running) Returned() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return true
	default:
		return false
	}
}

// Metric sums the samples of the named metric whose labels include every
// name=value pair of labels (histograms: the sample count). It is NaN when
// the registry cannot be gathered. Safe to call from polling goroutines.
func (r *Running) Metric(name string, labels ...string) float64 {
	families, err := r.Registry.Gather()
	if err != nil {
		return math.NaN()
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := make(map[string]string)
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// Logger logs to the test log at debug level (go test -v shows it).
func Logger(t testing.TB) *slog.Logger {
	return LoggerAt(t, slog.LevelDebug)
}

// LoggerAt logs to the test log from level up. Lines written after the
// cleanups registered later than this call have run (a goroutine that
// outlived the test) are dropped: the test log no longer accepts them.
func LoggerAt(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// ReadTopic consumes topic from the start until it has n records, failing
// the test after Wait.
func (e *Env) ReadTopic(t testing.TB, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.Kafka.Brokers()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), Wait)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %s: got %d of %d records", topic, len(out), n)
		fetches.EachError(func(topic string, p int32, err error) {
			require.NoError(t, err, "read %s/%d", topic, p)
		})
		out = append(out, fetches.Records()...)
	}
	return out
}

// Header returns the value of r's header key, or "" without one.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
