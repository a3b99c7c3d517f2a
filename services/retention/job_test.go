package retention_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/retention"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestMain(m *testing.M) {
	devstacktest.Main(m)
}

const day = 24 * time.Hour

// now is the time the jobs of these tests run at, unless a test says
// otherwise.
var now = time.Date(2026, 3, 14, 15, 9, 30, 0, time.UTC)

// ages are the ages of the events seed gives each tenant.
var ages = []time.Duration{day, 9 * day, 11 * day, 20 * day, 100 * day, 800 * day}

func ptr[T any](v T) *T { return &v }

// openStore opens and migrates the test's own database.
func openStore(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), postgres.Config{URL: url}, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))
	return db
}

// seed creates tenant with the given overrides and applies one "click"
// event per age of ages, ages before at.
func seed(t *testing.T, db *postgres.DB, tenant tenancy.ID, overrides tenancy.LimitOverrides, at time.Time) {
	t.Helper()
	_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: tenant, Limits: overrides})
	require.NoError(t, err)
	addEvents(t, db, tenant, "e", at)
}

// addEvents applies clicks(tenant, prefix, at).
func addEvents(t *testing.T, db *postgres.DB, tenant tenancy.ID, prefix string, at time.Time) {
	t.Helper()
	_, err := db.ApplyBatch(t.Context(), clicks(tenant, prefix, at))
	require.NoError(t, err)
}

// clicks is a batch of one "click" event of tenant per age of ages, ages
// before at, with IDs prefix0, prefix1, ...
func clicks(tenant tenancy.ID, prefix string, at time.Time) postgres.Batch {
	events := make([]postgres.Event, len(ages))
	for i, age := range ages {
		events[i] = postgres.Event{
			Tenant: tenant, EventID: prefix + string(rune('0'+i)), Type: "click",
			Time: at.Add(-age), ReceivedAt: at.Add(-age),
		}
	}
	return postgres.Batch{Events: events}
}

func countEvents(t *testing.T, db *postgres.DB, tenant tenancy.ID) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM events WHERE tenant_id = $1`, string(tenant)).Scan(&n))
	return n
}

// metric returns the value of the metric name on reg, summed over the series
// whose labels include the given name/value pairs.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newJob returns a job over store whose clock reads now, with its own
// registry and a JSON log.
func newJob(t *testing.T, store retention.Store) (*retention.Job, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	job, err := retention.New(retention.Config{Interval: time.Hour, Defaults: tenancy.DefaultLimits(), Now: func() time.Time { return now }},
		store, slog.New(slog.NewJSONHandler(logs, nil)), reg)
	require.NoError(t, err)
	return job, reg, logs
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	bad := tenancy.DefaultLimits()
	bad.RawRetention = time.Hour
	err := retention.Config{Defaults: bad}.Validate()
	require.ErrorIs(t, err, retention.ErrInvalidConfig)
	require.ErrorContains(t, err, "interval is 0s, must be positive")
	require.ErrorContains(t, err, "raw retention must be at least")

	_, err = retention.New(retention.Config{Interval: time.Minute, Defaults: tenancy.DefaultLimits()}, nil, nil, nil)
	require.ErrorIs(t, err, retention.ErrInvalidConfig)
}

// TestRoundEnforcesEachTenantsLimits: each tenant loses what its own
// effective limits let go; a tenant whose stored limits are not valid loses
// nothing; the metrics and the log line say what was deleted.
func TestRoundEnforcesEachTenantsLimits(t *testing.T) {
	t.Parallel()
	db := openStore(t, devstacktest.Postgres(t))
	seed(t, db, "acme", tenancy.LimitOverrides{RawRetention: ptr(10 * day), RollupRetention: ptr(30 * day)}, now)
	seed(t, db, "acme2", tenancy.LimitOverrides{}, now)
	// Written past the admin API's checks: a raw retention shorter than the
	// past window.
	seed(t, db, "broken", tenancy.LimitOverrides{RawRetention: ptr(time.Hour)}, now)

	job, reg, logs := newJob(t, db)
	rep, err := job.Round(t.Context())
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Equal(t, 2, rep.Tenants)
	require.Equal(t, []tenancy.ID{"broken"}, rep.Invalid)

	require.Equal(t, 2, countEvents(t, db, "acme"), "10 days kept")
	require.Equal(t, 4, countEvents(t, db, "acme2"), "the default 90 days kept")
	require.Equal(t, len(ages), countEvents(t, db, "broken"), "invalid limits delete nothing")
	var days int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM rollups_1d WHERE tenant_id = 'acme2'`).Scan(&days))
	require.Equal(t, len(ages)-1, days, "the default 2 years of rollups kept")

	require.EqualValues(t, 4+2, rep.Result.Deleted["events"])
	require.Equal(t, float64(4+2), metric(t, reg, "abacus_retention_deleted_rows_total", "table", "events"))
	require.Equal(t, float64(rep.Result.Deleted["rollups_1d"]), metric(t, reg, "abacus_retention_deleted_rows_total", "table", "rollups_1d"))
	require.Equal(t, float64(now.Unix()), metric(t, reg, "abacus_retention_last_success_timestamp_seconds"))
	require.Zero(t, metric(t, reg, "abacus_retention_failures_total"))
	require.Contains(t, logs.String(), `"msg":"retention round done","tenants":2,"tenants_invalid":1,"deleted_rows":{`)
	require.Contains(t, logs.String(), `"events":6`)
	require.Contains(t, logs.String(), `"msg":"retention skips a tenant whose limits are not valid","tenant_id":"broken"`)

	// The counters add up over rounds.
	addEvents(t, db, "acme", "late", now)
	_, err = job.Round(t.Context())
	require.NoError(t, err)
	require.Equal(t, float64(4+2+4), metric(t, reg, "abacus_retention_deleted_rows_total", "table", "events"))
}

// blockingStore holds a round inside EnforceRetention, with the lock taken,
// until proceed is closed.
type blockingStore struct {
	retention.Store
	entered, proceed chan struct{}
}

func (s *blockingStore) EnforceRetention(ctx context.Context, policies []postgres.RetentionPolicy, now time.Time) (postgres.RetentionResult, error) {
	close(s.entered)
	<-s.proceed
	return s.Store.EnforceRetention(ctx, policies, now)
}

// TestOneProcessAtATime runs two jobs, as two processes would, over one
// database: while one runs a round, the other's round is skipped; once it is
// done, the other may run.
func TestOneProcessAtATime(t *testing.T) {
	t.Parallel()
	url := devstacktest.Postgres(t)
	first := openStore(t, url)
	second := openStore(t, url)
	seed(t, first, "acme", tenancy.LimitOverrides{}, now)

	blocking := &blockingStore{Store: first, entered: make(chan struct{}), proceed: make(chan struct{})}
	jobA, regA, _ := newJob(t, blocking)
	jobB, regB, _ := newJob(t, second)

	type outcome struct {
		rep retention.Report
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		rep, err := jobA.Round(t.Context())
		done <- outcome{rep, err}
	}()
	<-blocking.entered

	rep, err := jobB.Round(t.Context())
	require.NoError(t, err, "a skipped round is no failure")
	require.False(t, rep.Ran)
	require.Equal(t, 1.0, metric(t, regB, "abacus_retention_skipped_total"))
	require.Zero(t, metric(t, regB, "abacus_retention_last_success_timestamp_seconds"))

	close(blocking.proceed)
	a := <-done
	require.NoError(t, a.err)
	require.True(t, a.rep.Ran)
	require.Equal(t, 2.0, metric(t, regA, "abacus_retention_deleted_rows_total", "table", "events"))
	require.Zero(t, metric(t, regA, "abacus_retention_skipped_total"))

	rep, err = jobB.Round(t.Context())
	require.NoError(t, err)
	require.True(t, rep.Ran, "the lock was given back")
	require.Zero(t, rep.Result.Deleted["events"], "nothing left to delete")
}

// TestStoppedDatabase stops the package's PostgreSQL under a running job: its
// rounds fail, are counted and logged, and it keeps running; once the
// database is back, a round succeeds again.
//
// It stops the server every test of the package shares, so it must not call
// t.Parallel: Go finishes it before any parallel test resumes.
func TestStoppedDatabase(t *testing.T) {
	pg := devstacktest.PostgresServer(t)
	db := openStore(t, devstacktest.Postgres(t))
	seed(t, db, "acme", tenancy.LimitOverrides{}, time.Now())
	down := false
	t.Cleanup(func() {
		// Leave the server running for the tests after this one, even when
		// this one failed half way. (t.Context is canceled by now.)
		if down {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
			defer cancel()
			require.NoError(t, pg.Restart(ctx))
		}
	})

	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	job, err := retention.New(retention.Config{Interval: 20 * time.Millisecond, Defaults: tenancy.DefaultLimits()},
		db, slog.New(slog.NewJSONHandler(logs, nil)), reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan error, 1)
	go func() { returned <- job.Run(ctx) }()

	const wait, tick = 30 * time.Second, 20 * time.Millisecond
	deleted := func() float64 { return metric(t, reg, "abacus_retention_deleted_rows_total", "table", "events") }
	require.Eventually(t, func() bool { return deleted() == 2 }, wait, tick, "the first round deletes the expired events")

	require.NoError(t, pg.Stop())
	down = true
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, metric(t, reg, "abacus_retention_failures_total"), 3.0)
	}, wait, tick)
	require.Contains(t, logs.String(), `"msg":"retention round failed; retrying next interval"`)
	select {
	case err := <-returned:
		require.FailNow(t, "the job returned during the outage", "%v", err)
	default:
	}

	require.NoError(t, pg.Restart(t.Context()))
	down = false
	// The pool finds its connections to the stopped server broken as it uses them.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := db.ApplyBatch(t.Context(), clicks("acme", "after", time.Now()))
		assert.NoError(c, err)
	}, wait, tick)
	require.Eventually(t, func() bool { return deleted() == 4 }, wait, tick, "rounds succeed again")

	cancel()
	require.NoError(t, <-returned)
}
