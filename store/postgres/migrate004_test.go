package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
)

// TestMigration004MovesDedupKeysIntoEvents upgrades a database whose events
// were applied with event_dedup and checks that the keys stored before the
// upgrade still refuse their duplicates afterwards.
func TestMigration004MovesDedupKeysIntoEvents(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})
	migrateTo(t, db, 3)

	// Events applied by a version that kept the keys in event_dedup.
	for _, sql := range []string{
		`INSERT INTO event_dedup (tenant_id, event_id, event_time) VALUES
             ('acme', 'e1', $1), ('acme', 'e2', $1), ('globex', 'e1', $1)`,
		`INSERT INTO events (tenant_id, event_id, event_type, event_time, received_at)
         SELECT tenant_id, event_id, 'click', event_time, $1 FROM event_dedup`,
		`INSERT INTO rollups_1m (tenant_id, event_type, bucket, event_count)
         VALUES ('acme', 'click', $1, 2), ('globex', 'click', $1, 1)`,
	} {
		_, err := db.Pool().Exec(t.Context(), sql, minute)
		require.NoError(t, err)
	}

	require.NoError(t, postgres.Migrate(t.Context(), db))
	requireSchema(t, db)
	require.Equal(t, 3, countRows(t, db, dedupTable(db)))

	// e1 and e2 of acme, and e1 of globex, were counted before the upgrade.
	applied, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: []postgres.Event{
		event("acme", "e1", 0), event("acme", "e2", 0), event("acme", "e3", 0),
		event("globex", "e1", 0), event("globex", "e2", 0),
	}})
	require.NoError(t, err)
	require.Equal(t, 2, applied.Inserted)
	require.Equal(t, 3, applied.Duplicates)
	require.Equal(t, []rollup{
		{Tenant: "acme", Type: "click", Bucket: minute, Count: 3},
		{Tenant: "globex", Type: "click", Bucket: minute, Count: 2},
	}, readRollups(t, db))
	require.Equal(t, 5, countRows(t, db, "events"))
}
