package postgres_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// retentionNow is the "now" of the retention tests: mid-minute, mid-hour and
// mid-day, so that cutoffs fall inside buckets.
var retentionNow = time.Date(2026, 3, 14, 15, 9, 30, 0, time.UTC)

const day = 24 * time.Hour

// retentionAges are the ages of the events seedRetention gives every tenant,
// chosen around the cutoffs of retentionPolicies.
var retentionAges = []time.Duration{
	time.Hour,
	10*day - time.Second,
	10 * day, // exactly acme's raw cutoff: kept, only older events go
	10*day + time.Second,
	15 * day,
	20*day + time.Second,
	30*day + time.Minute, // acme's rollup cutoff falls in its hour and day
	31 * day,
	45 * day,
	61 * day,
	90 * day,
}

// retentionPolicies give "acme" and "acme2" different retentions. "acm" has
// none and keeps everything. The names are prefixes of each other, and all
// three hold the same event IDs, types and times.
var retentionPolicies = []postgres.RetentionPolicy{
	{Tenant: "acme", Raw: 10 * day, Rollup: 30 * day},
	{Tenant: "acme2", Raw: 20 * day, Rollup: 60 * day},
}

var retentionTenants = []tenancy.ID{"acm", "acme", "acme2"}

// seedRetention applies, for each of retentionTenants, one event per age of
// retentionAges, alternately "click" and "view", with IDs e0, e1, ...
func seedRetention(t *testing.T, db *postgres.DB) {
	t.Helper()
	var events []postgres.Event
	for _, tenant := range retentionTenants {
		for i, age := range retentionAges {
			e := withValue(eventAt(tenant, fmt.Sprintf("e%d", i), retentionNow.Add(-age)), float64(i))
			if i%2 == 1 {
				e.Type = "view"
			}
			events = append(events, e)
		}
	}
	applied, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: events})
	require.NoError(t, err)
	require.Equal(t, len(events), applied.Inserted)
}

// rawRow is a stored raw event or dedup key as the retention tests compare
// them.
type rawRow struct {
	Tenant, ID string
	Time       time.Time
}

func readRaw(t *testing.T, db *postgres.DB, table string) []rawRow {
	t.Helper()
	rows, err := db.Pool().Query(t.Context(), `SELECT tenant_id, event_id, event_time FROM `+table+` ORDER BY 1, 2`)
	require.NoError(t, err)
	defer rows.Close()
	var out []rawRow
	for rows.Next() {
		var r rawRow
		require.NoError(t, rows.Scan(&r.Tenant, &r.ID, &r.Time))
		r.Time = r.Time.UTC()
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func hasEventDedup(t *testing.T, db *postgres.DB) bool {
	t.Helper()
	var exists bool
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT to_regclass('event_dedup') IS NOT NULL`).Scan(&exists))
	return exists
}

// policyOf returns the policy of tenant in policies.
func policyOf(policies []postgres.RetentionPolicy, tenant string) (postgres.RetentionPolicy, bool) {
	i := slices.IndexFunc(policies, func(p postgres.RetentionPolicy) bool { return string(p.Tenant) == tenant })
	if i < 0 {
		return postgres.RetentionPolicy{}, false
	}
	return policies[i], true
}

// keptRaw is what retention must leave of raw rows: the rows of tenants
// without a policy, and those whose event time is not before the cutoff.
func keptRaw(rows []rawRow, policies []postgres.RetentionPolicy, now time.Time) []rawRow {
	var out []rawRow
	for _, r := range rows {
		if p, ok := policyOf(policies, r.Tenant); !ok || !r.Time.Before(now.Add(-p.Raw)) {
			out = append(out, r)
		}
	}
	return out
}

// keptLevel is what retention must leave of a rollup table: the rows of
// tenants without a policy, and those whose bucket ends after the cutoff.
func keptLevel(rows []levelRow, width time.Duration, policies []postgres.RetentionPolicy, now time.Time) []levelRow {
	var out []levelRow
	for _, r := range rows {
		if p, ok := policyOf(policies, r.Tenant); !ok || r.Bucket.Add(width).After(now.Add(-p.Rollup)) {
			out = append(out, r)
		}
	}
	return out
}

var rollupWidths = map[string]time.Duration{"rollups_1m": time.Minute, "rollups_1h": time.Hour, "rollups_1d": day}

// requireRetained runs EnforceRetention over a database holding before (per
// table, as readRaw and readLevel return them) and checks that exactly the
// expired rows of the tenants with a policy went, and that the result counts
// them.
func requireRetained(t *testing.T, db *postgres.DB, policies []postgres.RetentionPolicy) postgres.RetentionResult {
	t.Helper()
	rawTables := []string{"events"}
	if hasEventDedup(t, db) {
		rawTables = append(rawTables, "event_dedup")
	}
	beforeRaw := map[string][]rawRow{}
	for _, table := range rawTables {
		beforeRaw[table] = readRaw(t, db, table)
	}
	beforeLevel := map[string][]levelRow{}
	for _, table := range rollupTables {
		beforeLevel[table] = readLevel(t, db, table)
	}

	res, err := db.EnforceRetention(t.Context(), policies, retentionNow)
	require.NoError(t, err)

	for _, table := range rawTables {
		want := keptRaw(beforeRaw[table], policies, retentionNow)
		require.Equal(t, want, readRaw(t, db, table), table)
		require.EqualValues(t, len(beforeRaw[table])-len(want), res.Deleted[table], table)
	}
	for _, table := range rollupTables {
		want := keptLevel(beforeLevel[table], rollupWidths[table], policies, retentionNow)
		require.Equal(t, want, readLevel(t, db, table), "%s: the kept rows are untouched", table)
		require.EqualValues(t, len(beforeLevel[table])-len(want), res.Deleted[table], table)
	}
	return res
}

// TestEnforceRetention checks the per-tenant cutoffs: exactly the rows older
// than each tenant's cutoffs go, and nothing of any other tenant, though the
// tenants share event IDs, types and times and their names are prefixes of
// each other.
func TestEnforceRetention(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	seedRetention(t, db)
	res := requireRetained(t, db, retentionPolicies)
	require.Empty(t, res.DroppedChunks, "the plain layout drops no chunks")
	require.EqualValues(t, 8+6, res.Deleted["events"], "acme loses 8 events, acme2 6")

	// A second run finds nothing more to delete.
	again, err := db.EnforceRetention(t.Context(), retentionPolicies, retentionNow)
	require.NoError(t, err)
	for table, n := range again.Deleted {
		require.Zero(t, n, table)
	}

	t.Run("a bucket goes only once all of it is past the cutoff", func(t *testing.T) {
		// acme keeps rollups for 30 days: its cutoff is 2026-02-12 15:09:30.
		// The event 30 days and a minute old is in minute 15:08 (gone), hour
		// 15:00 and day 2026-02-12 (both kept); the one 31 days old is in day
		// 2026-02-11, which ended before the cutoff.
		buckets := func(table string) []time.Time {
			var out []time.Time
			for _, r := range readLevel(t, db, table) {
				if r.Tenant == "acme" {
					out = append(out, r.Bucket)
				}
			}
			return out
		}
		feb12 := time.Date(2026, 2, 12, 0, 0, 0, 0, time.UTC)
		require.NotContains(t, buckets("rollups_1m"), feb12.Add(15*time.Hour+8*time.Minute))
		require.Contains(t, buckets("rollups_1h"), feb12.Add(15*time.Hour))
		require.Contains(t, buckets("rollups_1d"), feb12)
		require.NotContains(t, buckets("rollups_1d"), feb12.Add(-day))
		require.NotContains(t, buckets("rollups_1h"), feb12.Add(-day+15*time.Hour))
	})

	t.Run("rollups outlive their raw events", func(t *testing.T) {
		var raw, rollup int
		require.NoError(t, db.Pool().QueryRow(t.Context(), `
SELECT (SELECT count(*) FROM events WHERE tenant_id = 'acme'),
       (SELECT coalesce(sum(event_count), 0) FROM rollups_1d WHERE tenant_id = 'acme')`).Scan(&raw, &rollup))
		require.Equal(t, 3, raw, "the events of the last 10 days")
		require.Equal(t, 7, rollup, "the events of the days that ended less than 30 days ago")
	})
}

// TestEnforceRetentionKeepsRollups deletes raw events only (the rollup
// retention is longer than any data): every rollup row stays exactly as it
// was, so the counts of the past do not change when their events go.
func TestEnforceRetentionKeepsRollups(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	seedRetention(t, db)
	before := map[string][]levelRow{}
	for _, table := range rollupTables {
		before[table] = readLevel(t, db, table)
	}
	series, err := db.TimeSeriesCount(t.Context(), "acme", "click", retentionNow.Add(-100*day).Truncate(day), retentionNow.Truncate(day), postgres.GranularityDay)
	require.NoError(t, err)

	policies := []postgres.RetentionPolicy{{Tenant: "acme", Raw: 2 * day, Rollup: 365 * day}, {Tenant: "acme2", Raw: 2 * day, Rollup: 365 * day}}
	res := requireRetained(t, db, policies)
	require.EqualValues(t, 2*(len(retentionAges)-1), res.Deleted["events"])
	for _, table := range rollupTables {
		require.Equal(t, before[table], readLevel(t, db, table), table)
	}
	after, err := db.TimeSeriesCount(t.Context(), "acme", "click", retentionNow.Add(-100*day).Truncate(day), retentionNow.Truncate(day), postgres.GranularityDay)
	require.NoError(t, err)
	require.Equal(t, series, after)
}

// TestEnforceRetentionDedupKeys checks that an event's dedup key goes with
// the event and stays while the event stays. Once the key is gone the same
// event is new again: this is why raw retention must exceed the timestamp
// past window and the Kafka retention.
func TestEnforceRetentionDedupKeys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	seedRetention(t, db)
	res := requireRetained(t, db, retentionPolicies)
	if !hasEventDedup(t, db) {
		require.Zero(t, res.Deleted["event_dedup"], "the dedup key is part of events")
		return
	}
	require.Equal(t, res.Deleted["events"], res.Deleted["event_dedup"])
	require.Equal(t, readRaw(t, db, "events"), readRaw(t, db, "event_dedup"), "every kept event keeps its key, and no other key is left")

	kept := eventAt("acme", "e0", retentionNow.Add(-retentionAges[0]))
	expired := eventAt("acme", "e3", retentionNow.Add(-retentionAges[3]))
	applied, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: []postgres.Event{kept, expired}})
	require.NoError(t, err)
	require.Equal(t, 1, applied.Duplicates, "a kept event is still a duplicate")
	require.Equal(t, 1, applied.Inserted, "an expired event counts again")
}

// TestEnforceRetentionWithoutDedupTable covers the layout whose dedup key is
// part of events, where event_dedup does not exist.
func TestEnforceRetentionWithoutDedupTable(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	_, err := db.Pool().Exec(t.Context(), `DROP TABLE IF EXISTS event_dedup`)
	require.NoError(t, err)
	_, err = db.Pool().Exec(t.Context(), `
INSERT INTO events (tenant_id, event_id, event_type, event_time, received_at)
SELECT tenant, 'e' || age, 'click', $1::timestamptz - age * interval '1 day', $1::timestamptz
FROM unnest(ARRAY['acme', 'acme2', 'acm']) AS tenant, generate_series(1, 30) AS age`, retentionNow)
	require.NoError(t, err)
	res := requireRetained(t, db, retentionPolicies)
	require.EqualValues(t, 20+10, res.Deleted["events"], "acme keeps the last 10 days, acme2 the last 20")
	require.NotContains(t, res.Deleted, "event_dedup")
}

// TestEnforceRetentionInChunks deletes more rows of one tenant and event type
// than one statement may, and more event types of one tenant than one page of
// types holds.
func TestEnforceRetentionInChunks(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	const (
		expired = 20_001 // two full chunks of 10,000 and one more row
		types   = 1_001  // one full page of types and one more
	)
	// bulk2 has the first 100 of bulk's expired events, and no policy.
	_, err := db.Pool().Exec(t.Context(), `
INSERT INTO events (tenant_id, event_id, event_type, event_time, received_at)
SELECT tenant, 'e' || i, 'click', $1::timestamptz - interval '30 days' - i * interval '1 second', $1::timestamptz
FROM unnest(ARRAY['bulk', 'bulk2']) AS tenant, generate_series(1, $2::int) AS i
WHERE tenant = 'bulk' OR i <= 100
UNION ALL
SELECT tenant, 'new' || i, 'click', $1::timestamptz - i * interval '1 second', $1::timestamptz
FROM unnest(ARRAY['bulk', 'bulk2']) AS tenant, generate_series(1, 3) AS i
UNION ALL
SELECT 'bulk', 'typed' || i, 'type' || i, $1::timestamptz - interval '30 days', $1::timestamptz
FROM generate_series(1, $3::int) AS i`, retentionNow, expired, types)
	require.NoError(t, err)
	_, err = db.Pool().Exec(t.Context(), `
INSERT INTO rollups_1m (tenant_id, event_type, bucket, event_count)
SELECT 'bulk', 'type' || i, $1::timestamptz - interval '30 days', 1
FROM generate_series(1, $2::int) AS i`, retentionNow.Truncate(time.Minute), types)
	require.NoError(t, err)
	if hasEventDedup(t, db) {
		_, err = db.Pool().Exec(t.Context(), `INSERT INTO event_dedup (tenant_id, event_id, event_time) SELECT tenant_id, event_id, event_time FROM events`)
		require.NoError(t, err)
	}

	res := requireRetained(t, db, []postgres.RetentionPolicy{{Tenant: "bulk", Raw: 10 * day, Rollup: 10 * day}})
	require.EqualValues(t, expired+types, res.Deleted["events"])
	require.EqualValues(t, types, res.Deleted["rollups_1m"])
	require.Equal(t, 3, countRows(t, db, "events WHERE tenant_id = 'bulk'"))
	require.Equal(t, 100+3, countRows(t, db, "events WHERE tenant_id = 'bulk2'"))
}

func TestEnforceRetentionRefusesInvalidPolicies(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	seedRetention(t, db)
	tests := []struct {
		name     string
		policies []postgres.RetentionPolicy
		now      time.Time
	}{
		{name: "zero now", policies: retentionPolicies},
		{name: "no tenant", policies: []postgres.RetentionPolicy{{Raw: day, Rollup: day}}, now: retentionNow},
		{name: "zero raw retention", policies: []postgres.RetentionPolicy{{Tenant: "acme", Rollup: day}}, now: retentionNow},
		{name: "negative rollup retention", policies: []postgres.RetentionPolicy{{Tenant: "acme", Raw: day, Rollup: -day}}, now: retentionNow},
		{name: "one bad policy among good ones", now: retentionNow,
			policies: append(slices.Clone(retentionPolicies), postgres.RetentionPolicy{Tenant: "acm", Raw: -1, Rollup: day})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := db.EnforceRetention(t.Context(), tt.policies, tt.now)
			require.ErrorIs(t, err, postgres.ErrInvalidArgument)
		})
	}
	require.Equal(t, len(retentionTenants)*len(retentionAges), countRows(t, db, "events"), "nothing was deleted")

	res, err := db.EnforceRetention(t.Context(), nil, retentionNow)
	require.NoError(t, err, "no policies, nothing to do")
	require.Empty(t, res.Deleted)
}

func TestTryAdvisoryLock(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	other := openDB(t, postgres.Config{URL: db.Pool().Config().ConnString()})

	release, ok, err := db.TryAdvisoryLock(t.Context(), "abacus.test")
	require.NoError(t, err)
	require.True(t, ok)

	_, ok, err = other.TryAdvisoryLock(t.Context(), "abacus.test")
	require.NoError(t, err)
	require.False(t, ok, "another session holds it")
	releaseOther, ok, err := other.TryAdvisoryLock(t.Context(), "abacus.other")
	require.NoError(t, err)
	require.True(t, ok, "locks of other names are independent")
	releaseOther(t.Context())

	release(t.Context())
	release, ok, err = other.TryAdvisoryLock(t.Context(), "abacus.test")
	require.NoError(t, err)
	require.True(t, ok, "released with the session")
	release(t.Context())
}

// TestEnforceRetentionTimescale checks the hypertable layout: raw events
// compress per tenant under a compression policy, chunks past every tenant's
// retention are dropped whole, the rest goes by per-tenant DELETEs that also
// reach into compressed chunks, and what is left is exactly what the plain
// layout leaves. The plain layout is covered by the other tests, so this one
// runs only where the machine's PostgreSQL has TimescaleDB.
func TestEnforceRetentionTimescale(t *testing.T) {
	t.Parallel()
	if !devstacktest.PostgresServer(t).TimescaleAvailable() {
		t.Skip("TimescaleDB is not installed for the test PostgreSQL (no timescaledb library in pg_config --pkglibdir), " +
			"so only the plain-table retention is tested; install TimescaleDB to run this test")
	}
	hyper := newDB(t)
	require.True(t, hyper.Timescale())
	var compression bool
	var policies int
	require.NoError(t, hyper.Pool().QueryRow(t.Context(), `
SELECT h.compression_enabled,
       (SELECT count(*) FROM timescaledb_information.jobs AS j
        WHERE j.hypertable_schema = h.hypertable_schema AND j.hypertable_name = h.hypertable_name
          AND j.proc_name = 'policy_compression')
FROM timescaledb_information.hypertables AS h
WHERE h.hypertable_schema = current_schema() AND h.hypertable_name = 'events'`).Scan(&compression, &policies))
	require.True(t, compression, "events compress")
	require.Equal(t, 1, policies, "a policy compresses old chunks of events")

	plain := openDB(t, postgres.Config{DisableTimescale: true})
	require.NoError(t, postgres.Migrate(t.Context(), plain))

	// Every tenant has a policy here: on TimescaleDB, rows of tenants without
	// one go with chunks past every policy's retention.
	policiesAll := append(slices.Clone(retentionPolicies), postgres.RetentionPolicy{Tenant: "acm", Raw: 40 * day, Rollup: 100 * day})
	for _, db := range []*postgres.DB{hyper, plain} {
		seedRetention(t, db)
		// Data far older than every retention, for chunks to drop.
		var ancient []postgres.Event
		for _, tenant := range retentionTenants {
			ancient = append(ancient, eventAt(tenant, "ancient", retentionNow.AddDate(-3, 0, 0)))
		}
		_, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: ancient})
		require.NoError(t, err)
	}
	var compressed int
	require.NoError(t, hyper.Pool().QueryRow(t.Context(), `
SELECT count(compress_chunk(c)) FROM show_chunks('events', older_than => $1::timestamptz) AS c`,
		retentionNow.Add(-12*day)).Scan(&compressed))
	require.Positive(t, compressed)

	requireRetained(t, plain, policiesAll)
	res, err := hyper.EnforceRetention(t.Context(), policiesAll, retentionNow)
	require.NoError(t, err)
	for _, table := range append([]string{"events"}, rollupTables...) {
		require.Positive(t, res.DroppedChunks[table], "chunks of %s past every retention are dropped", table)
	}
	require.Positive(t, res.Deleted["events"], "the rest goes by DELETE, compressed chunks included")

	require.Equal(t, readRaw(t, plain, "events"), readRaw(t, hyper, "events"))
	require.Equal(t, readRaw(t, hyper, "events"), readRaw(t, hyper, "event_dedup"), "the dedup keys of dropped and deleted events go too")
	for _, table := range rollupTables {
		require.Equal(t, withoutUpdatedAt(readLevel(t, plain, table)), withoutUpdatedAt(readLevel(t, hyper, table)), table)
	}

	again, err := hyper.EnforceRetention(t.Context(), policiesAll, retentionNow)
	require.NoError(t, err)
	for table, n := range again.Deleted {
		require.Zero(t, n, table)
	}
}

// TestMigration007KeepsLongWindowsValid: a tenant whose stored past window
// leaves the default raw retention too short to cover it gets the shortest
// raw retention that does, so that none of its overrides are ignored.
func TestMigration007KeepsLongWindowsValid(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})
	migrateTo(t, db, 6)
	for id, limits := range map[string]string{
		"long":  fmt.Sprintf(`{"timestamp_past_window": %d, "events_burst": 5}`, 200*day),
		"edge":  fmt.Sprintf(`{"timestamp_past_window": %d}`, 89*day),
		"short": fmt.Sprintf(`{"timestamp_past_window": %d}`, 30*day),
		"none":  `{}`,
	} {
		_, err := db.Pool().Exec(t.Context(), `INSERT INTO tenants (tenant_id, display_name, limits) VALUES ($1, '', $2)`, id, limits)
		require.NoError(t, err)
	}
	require.NoError(t, postgres.Migrate(t.Context(), db))
	requireSchema(t, db)

	overrides, err := db.LoadLimitOverrides(t.Context())
	require.NoError(t, err)
	require.Equal(t, tenancy.LimitOverrides{TimestampPastWindow: ptr(200 * day), EventsBurst: ptr(int64(5)), RawRetention: ptr(201 * day)}, overrides["long"])
	require.Equal(t, tenancy.LimitOverrides{TimestampPastWindow: ptr(89 * day)}, overrides["edge"], "90 days cover 89 and a day")
	require.Equal(t, tenancy.LimitOverrides{TimestampPastWindow: ptr(30 * day)}, overrides["short"])
	require.NotContains(t, overrides, "none")
	for id, o := range overrides {
		require.NoError(t, o.Apply(tenancy.DefaultLimits()).Validate(), id)
	}
}
