package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/store/postgres"
)

var schemaTables = []string{"tenants", "api_keys", "events", "rollups_1m", "rollups_1h", "rollups_1d", "consumer_offsets"}

func requireSchema(t *testing.T, db *postgres.DB) {
	t.Helper()
	for _, table := range schemaTables {
		require.True(t, tableExists(t, db, table), "table %s", table)
	}
	require.Equal(t, db.Timescale(), tableExists(t, db, "event_dedup"),
		"event_dedup holds the dedup keys on TimescaleDB only (migration 004)")
	var version int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT version FROM abacus_schema_version`).Scan(&version))
	require.Equal(t, latestVersion, version)
}

func tableExists(t *testing.T, db *postgres.DB, table string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists))
	return exists
}

// latestVersion is the number of the newest file in migrations/.
const latestVersion = 7

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})
	for range 2 {
		require.NoError(t, postgres.Migrate(t.Context(), db))
	}
	requireSchema(t, db)
	require.Equal(t, devstacktest.PostgresServer(t).TimescaleAvailable(), db.Timescale(),
		"a fresh database uses TimescaleDB exactly when the server offers it")

	// A reopened DB agrees with the layout on disk.
	again := openDB(t, postgres.Config{URL: db.Pool().Config().ConnString()})
	require.Equal(t, db.Timescale(), again.Timescale())
	require.NoError(t, postgres.Migrate(t.Context(), again))
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	url := devstacktest.Postgres(t)
	var g errgroup.Group
	dbs := make([]*postgres.DB, 4)
	for i := range dbs {
		dbs[i] = openDB(t, postgres.Config{URL: url})
	}
	for _, db := range dbs {
		g.Go(func() error { return postgres.Migrate(t.Context(), db) })
	}
	require.NoError(t, g.Wait())
	requireSchema(t, dbs[0])
}

// ternLockID is the advisory lock key tern's migrator holds while it runs
// (lockNum in github.com/jackc/tern/v2/migrate).
const ternLockID = int64(9628173550095224)

func TestMigrateWaitsForLockAndHonoursContext(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})

	// Another migrator holds the lock: Migrate waits for it until ctx ends.
	holder, err := db.Pool().Acquire(t.Context())
	require.NoError(t, err)
	defer holder.Release()
	_, err = holder.Exec(t.Context(), `SELECT pg_advisory_lock($1)`, ternLockID)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, postgres.Migrate(ctx, db), context.DeadlineExceeded)

	// Nothing of the abandoned run lingers; once the lock is free, it works.
	_, err = holder.Exec(t.Context(), `SELECT pg_advisory_unlock($1)`, ternLockID)
	require.NoError(t, err)
	require.NoError(t, postgres.Migrate(t.Context(), db))
	requireSchema(t, db)

	cancelled, cancelNow := context.WithCancel(t.Context())
	cancelNow()
	require.Error(t, postgres.Migrate(cancelled, db))
}
