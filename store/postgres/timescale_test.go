package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// TestTimescale checks the hypertable layout and that it answers exactly like
// the plain-table layout. The plain layout is covered by every other test, so
// this one runs only where the machine's PostgreSQL has TimescaleDB.
func TestTimescale(t *testing.T) {
	t.Parallel()
	if !devstacktest.PostgresServer(t).TimescaleAvailable() {
		t.Skip("TimescaleDB is not installed for the test PostgreSQL (no timescaledb library in pg_config --pkglibdir), " +
			"so only the plain-table layout is tested; install TimescaleDB to run this test")
	}

	hyper := newDB(t)
	require.True(t, hyper.Timescale())
	var tables []string
	rows, err := hyper.Pool().Query(t.Context(), `
SELECT hypertable_name::text FROM timescaledb_information.hypertables
WHERE hypertable_schema = current_schema() ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"events", "rollups_1d", "rollups_1h", "rollups_1m"}, tables)

	plain := openDB(t, postgres.Config{DisableTimescale: true})
	require.False(t, plain.Timescale())
	require.NoError(t, postgres.Migrate(t.Context(), plain))
	require.False(t, plain.Timescale())

	t.Run("a plain schema stays plain", func(t *testing.T) {
		reopened := openDB(t, postgres.Config{URL: plain.Pool().Config().ConnString()})
		require.False(t, reopened.Timescale())
		require.NoError(t, postgres.Migrate(t.Context(), reopened))
		require.False(t, reopened.Timescale())
	})

	t.Run("both layouts give identical results", func(t *testing.T) {
		day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
		for _, db := range []*postgres.DB{hyper, plain} {
			seedTimeSeries(t, db, day)
			// Replays and fencing behave the same on hypertables.
			b := postgres.Batch{Group: "rollup", Generation: 2, Events: []postgres.Event{event("acme", "e1", 0)},
				Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: 1}}}
			for range 2 {
				_, err := db.ApplyBatch(t.Context(), b)
				require.NoError(t, err)
			}
			b.Generation = 1
			_, err := db.ApplyBatch(t.Context(), b)
			require.ErrorIs(t, err, postgres.ErrFenced)
		}
		require.Equal(t, readRollups(t, plain), readRollups(t, hyper))
		for _, table := range rollupTables {
			require.Equal(t, withoutUpdatedAt(readLevel(t, plain, table)), withoutUpdatedAt(readLevel(t, hyper, table)), table)
		}
		require.Equal(t, countRows(t, plain, "events"), countRows(t, hyper, "events"))
		for _, g := range []string{postgres.GranularityMinute, postgres.GranularityHour, postgres.GranularityDay} {
			want, err := plain.TimeSeriesCount(t.Context(), "acme", "click", day, day.Add(48*time.Hour), g)
			require.NoError(t, err)
			got, err := hyper.TimeSeriesCount(t.Context(), "acme", "click", day, day.Add(48*time.Hour), g)
			require.NoError(t, err)
			require.Equal(t, contents(t, want), contents(t, got), g)
			require.NotEmpty(t, got)
			for _, metric := range []string{postgres.MetricSum, postgres.MetricAvg, postgres.MetricMin,
				postgres.MetricMax, postgres.MetricUniqueUsers} {
				// Every table: a day-aligned, an hour-aligned and a
				// minute-aligned range.
				for _, start := range []time.Time{day, day.Add(-time.Hour), day.Add(-time.Minute)} {
					want, err := plain.TimeSeries(t.Context(), "acme", "click", metric, start, day.Add(48*time.Hour), g)
					require.NoError(t, err)
					got, err := hyper.TimeSeries(t.Context(), "acme", "click", metric, start, day.Add(48*time.Hour), g)
					require.NoError(t, err)
					require.Equal(t, contents(t, want), contents(t, got), "%s %s from %s", metric, g, start)
				}
			}
		}
	})
}

// TestDisableTimescale runs everywhere: the option always yields plain tables.
func TestDisableTimescale(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{DisableTimescale: true})
	require.NoError(t, postgres.Migrate(t.Context(), db))
	require.False(t, db.Timescale())
	requireSchema(t, db)
}
