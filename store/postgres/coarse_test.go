package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
)

// mergeCoarse merges the pending hourly and daily sketches until none is
// left that can be merged.
func mergeCoarse(t *testing.T, db *postgres.DB) {
	t.Helper()
	for {
		n, err := db.MergeCoarseSketches(t.Context(), 7)
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

func pendingRows(t *testing.T, db *postgres.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE users_pending`).Scan(&n))
	return n
}

// storedUsers estimates the users of one stored sketch of table, or -1 if
// the row has none.
func storedUsers(t *testing.T, db *postgres.DB, table string, bucket time.Time) float64 {
	t.Helper()
	points, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers, bucket,
		bucket.Add(map[string]time.Duration{"rollups_1h": time.Hour, "rollups_1d": 24 * time.Hour}[table]),
		map[string]string{"rollups_1h": postgres.GranularityHour, "rollups_1d": postgres.GranularityDay}[table])
	require.NoError(t, err)
	if len(points) == 0 {
		return -1
	}
	return points[0].Value
}

// TestMergeCoarseSketches: a batch marks its hours and days pending; the
// merge rebuilds them from the finer rows; a row a batch is writing stays
// pending, and so does its day; a late event makes its hour and day
// pending again, and every answer on the way counts every user.
func TestMergeCoarseSketches(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return day.Add(time.Duration(n) * time.Hour) }
	apply := func(events ...postgres.Event) {
		t.Helper()
		_, err := db.ApplyBatch(ctx, postgres.Batch{Events: events})
		require.NoError(t, err)
	}
	apply(withUser(eventAt("acme", "a", h(1)), "u1"), withUser(eventAt("acme", "b", h(1).Add(time.Minute)), "u2"),
		withUser(eventAt("acme", "c", h(2)), "u1"), withUser(eventAt("acme", "d", h(3)), "")) // no user: nothing pending
	require.Equal(t, 2, pendingRows(t, db, "rollups_1h"))
	require.Equal(t, 1, pendingRows(t, db, "rollups_1d"))
	require.Equal(t, 2.0, storedUsers(t, db, "rollups_1h", h(1)), "read from the minutes while pending")
	require.Equal(t, 2.0, storedUsers(t, db, "rollups_1d", day))

	// A batch is writing hour 2: the merge does not wait for it, takes
	// hour 1 only, and leaves the day pending with hour 2.
	held, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = held.Rollback(ctx) }()
	_, err = held.Exec(ctx, `UPDATE rollups_1h SET updated_at = now() WHERE bucket = $1`, h(2))
	require.NoError(t, err)
	n, err := db.MergeCoarseSketches(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n, "hour 1")
	require.NoError(t, held.Commit(ctx))
	require.Equal(t, 1, pendingRows(t, db, "rollups_1h"))
	require.Equal(t, 1, pendingRows(t, db, "rollups_1d"), "a day with a pending hour stays pending")
	require.Equal(t, 2.0, storedUsers(t, db, "rollups_1d", day), "hour 1 merged, hour 2 from its minutes")

	mergeCoarse(t, db)
	require.Zero(t, pendingRows(t, db, "rollups_1h"))
	require.Zero(t, pendingRows(t, db, "rollups_1d"))
	require.Equal(t, 2.0, storedUsers(t, db, "rollups_1h", h(1)))
	require.Equal(t, 1.0, storedUsers(t, db, "rollups_1h", h(2)))
	require.Equal(t, -1.0, storedUsers(t, db, "rollups_1h", h(3)), "no users, no sketch")
	require.Equal(t, 2.0, storedUsers(t, db, "rollups_1d", day))

	// A late event with a new user: pending again, and counted at once.
	apply(withUser(eventAt("acme", "late", h(1).Add(30*time.Minute)), "u3"))
	require.Equal(t, 1, pendingRows(t, db, "rollups_1h"))
	require.Equal(t, 3.0, storedUsers(t, db, "rollups_1h", h(1)))
	require.Equal(t, 3.0, storedUsers(t, db, "rollups_1d", day))
	mergeCoarse(t, db)
	require.Equal(t, 3.0, storedUsers(t, db, "rollups_1h", h(1)))
	require.Equal(t, 3.0, storedUsers(t, db, "rollups_1d", day))

	_, err = db.MergeCoarseSketches(ctx, 0)
	require.ErrorIs(t, err, postgres.ErrInvalidArgument)
}
