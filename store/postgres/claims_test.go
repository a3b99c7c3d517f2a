package postgres

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestDistinctKeysOf(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	ev := func(tenant, id, typ string) Event {
		return Event{Tenant: tenancy.ID(tenant), EventID: id, Type: typ, Time: at, ReceivedAt: at}
	}
	events := []Event{
		ev("globex", "b", "first"),
		ev("acme", "b", "first"),
		ev("acme", "a", "first"),
		ev("acme", "b", "second"), // repeats index 1
		ev("globex", "b", "second"),
		ev("acme", "a\x01", "first"),
		ev("acme", "Z", "first"), // "C" order: uppercase first
	}
	k := distinctKeysOf(events)
	require.Equal(t, []int32{6, 2, 5, 1, 0}, k.sorted)
	require.Len(t, k.fingerprints, len(k.sorted))
	seen := map[uint64]bool{}
	for _, fp := range k.fingerprints {
		require.NotZero(t, fp)
		require.False(t, seen[fp])
		seen[fp] = true
	}
	// The same key hashes alike wherever it appears.
	again := distinctKeysOf(events[3:4])
	require.Equal(t, k.fingerprints[3], again.fingerprints[0])
	require.Empty(t, distinctKeysOf(nil).sorted)
}

func TestRecentKeys(t *testing.T) {
	t.Parallel()
	r := newRecentKeys()
	require.False(t, r.contains(42))
	r.add(42)
	require.True(t, r.contains(42))
	// Keys of one set: the set holds recentKeyWays of them, then the oldest
	// gives way.
	for i := uint64(1); i < recentKeyWays; i++ {
		require.False(t, r.contains(42+i*recentKeySets), "same set, other key")
		r.add(42 + i*recentKeySets)
	}
	for i := uint64(0); i < recentKeyWays; i++ {
		require.True(t, r.contains(42+i*recentKeySets))
	}
	r.add(42) // already there: no slot taken
	r.add(42 + recentKeyWays*recentKeySets)
	require.False(t, r.contains(42), "the oldest key gives way: forgetting costs speed, not correctness")
	require.True(t, r.contains(42+recentKeyWays*recentKeySets))
	require.True(t, r.contains(42+recentKeySets))
	require.False(t, r.contains(43), "other sets are untouched")
}

// TestCopyNamesTheConflictingRow: a claim COPY that meets an existing key
// says which of its rows did, and ApplyBatch, copying the others again,
// claims every new key and only those.
func TestCopyNamesTheConflictingRow(t *testing.T) {
	t.Parallel()
	db, err := Open(t.Context(), Config{URL: devstacktest.Postgres(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, Migrate(t.Context(), db))
	at := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	ev := func(id string) Event {
		return Event{Tenant: "acme", EventID: id, Type: "click", Time: at, ReceivedAt: at}
	}
	// Applied by another process: this handle does not remember them.
	other, err := Open(t.Context(), Config{URL: db.pool.Config().ConnString()}, nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	_, err = other.ApplyBatch(t.Context(), Batch{Events: []Event{ev("c"), ev("f"), ev("h")}})
	require.NoError(t, err)

	events := []Event{ev("a"), ev("b"), ev("c"), ev("d")}
	tx, err := db.pool.Begin(t.Context())
	require.NoError(t, err)
	copied, row, err := copyClaims(t.Context(), tx, claimLayout{keysInEvents: true}, events, []int32{0, 1, 2, 3})
	require.NoError(t, err)
	require.False(t, copied)
	require.Equal(t, 2, row, "the third row, c, exists")
	require.NoError(t, tx.Rollback(t.Context()))

	// Three existing keys among new ones, more than one retry each.
	var batch []Event
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"} {
		batch = append(batch, ev(id))
	}
	applied, err := db.ApplyBatch(t.Context(), Batch{Events: batch})
	require.NoError(t, err)
	require.Equal(t, 6, applied.Inserted)
	require.Equal(t, 3, applied.Duplicates)
	var count int64
	require.NoError(t, db.pool.QueryRow(t.Context(), `SELECT event_count FROM rollups_1m`).Scan(&count))
	require.EqualValues(t, 9, count)
}

// TestClaimsCrossedDoubts has two handles claim the same two new keys at the
// same moment, each doubting the key the other copies: each takes one key by
// ON CONFLICT and waits in COPY for the other's, which can deadlock. Whatever
// PostgreSQL aborts, both batches commit and each key counts once.
func TestClaimsCrossedDoubts(t *testing.T) {
	t.Parallel()
	// A short deadlock_timeout (the test server's role is a superuser, who
	// may set it) resolves the deadlocks this test provokes quickly.
	url := devstacktest.Postgres(t) + "&deadlock_timeout=50ms"
	open := func() *DB {
		db, err := Open(t.Context(), Config{URL: url}, nil)
		require.NoError(t, err)
		t.Cleanup(db.Close)
		return db
	}
	db1, db2 := open(), open()
	require.NoError(t, Migrate(t.Context(), db1))
	at := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	for round := range 5 {
		x := Event{Tenant: "acme", EventID: fmt.Sprintf("x%d", round), Type: "click", UserID: "u", Time: at, ReceivedAt: at}
		y := x
		y.EventID = fmt.Sprintf("y%d", round)
		// Each handle has "seen" one key the other has not (as after a
		// retention job deleted it), so each claims that one first.
		db1.recent.add(distinctKeysOf([]Event{x}).fingerprints[0])
		db2.recent.add(distinctKeysOf([]Event{y}).fingerprints[0])

		var (
			g       errgroup.Group
			start   sync.WaitGroup
			applied [2]Applied
		)
		start.Add(1)
		for i, db := range []*DB{db1, db2} {
			g.Go(func() error {
				start.Wait()
				a, err := db.ApplyBatch(t.Context(), Batch{Events: []Event{x, y}})
				applied[i] = a
				return err
			})
		}
		start.Done()
		require.NoError(t, g.Wait(), "round %d", round)
		require.Equal(t, 2, applied[0].Inserted+applied[1].Inserted, "round %d", round)
		require.Equal(t, 2, applied[0].Duplicates+applied[1].Duplicates, "round %d", round)
	}
	var events, count int64
	require.NoError(t, db1.pool.QueryRow(t.Context(), `SELECT count(*) FROM events`).Scan(&events))
	require.NoError(t, db1.pool.QueryRow(t.Context(), `SELECT event_count FROM rollups_1d`).Scan(&count))
	require.EqualValues(t, 10, events)
	require.EqualValues(t, 10, count)
}

// TestClaimPathsStoreTheSameRows applies the same events once by COPY (keys
// never seen) and once by INSERT ... ON CONFLICT (every key doubted) into two
// databases, and requires identical rows: values present and absent,
// properties with characters JSON must escape, and both rollups.
func TestClaimPathsStoreTheSameRows(t *testing.T) {
	t.Parallel()
	open := func() *DB {
		db, err := Open(t.Context(), Config{URL: devstacktest.Postgres(t)}, nil)
		require.NoError(t, err)
		t.Cleanup(db.Close)
		require.NoError(t, Migrate(t.Context(), db))
		return db
	}
	at := time.Date(2026, 3, 14, 15, 9, 7, 123456000, time.UTC)
	v := -2.5
	events := []Event{
		{Tenant: "acme", EventID: "a", Type: "click", UserID: "u1", SessionID: "s1", Time: at, ReceivedAt: at.Add(time.Second),
			Properties: map[string]string{"quote\"d": "back\\slash\n\t\x01", "émoji": "🙂"}, Value: &v},
		{Tenant: "acme", EventID: "b", Type: "view", Time: at.Add(time.Hour), ReceivedAt: at.Add(time.Hour)},
		{Tenant: "globex", EventID: "a", Type: "click", UserID: "u2", Time: at, ReceivedAt: at,
			Properties: map[string]string{}},
	}
	copied, inserted := open(), open()
	for _, e := range events {
		inserted.recent.add(distinctKeysOf([]Event{e}).fingerprints[0])
	}
	for _, db := range []*DB{copied, inserted} {
		a, err := db.ApplyBatch(t.Context(), Batch{Events: events})
		require.NoError(t, err)
		require.Equal(t, len(events), a.Inserted)
	}
	read := func(db *DB, sql string) []string {
		rows, err := db.pool.Query(t.Context(), sql)
		require.NoError(t, err)
		var out []string
		for rows.Next() {
			var row string
			require.NoError(t, rows.Scan(&row))
			out = append(out, row)
		}
		require.NoError(t, rows.Err())
		return out
	}
	for _, sql := range []string{
		`SELECT e::text FROM events e ORDER BY tenant_id, event_id`,
		`SELECT (tenant_id, event_type, bucket, event_count, value_sum, value_count, value_min, value_max, users_hll)::text
         FROM rollups_1m ORDER BY 1`,
	} {
		want := read(copied, sql)
		require.Len(t, want, 3)
		require.Equal(t, want, read(inserted, sql))
	}
}

// FuzzCopyErrorRow: whatever context an error carries, copyErrorRow names a
// row of the COPY or none, and reads the line number PostgreSQL writes.
func FuzzCopyErrorRow(f *testing.F) {
	f.Add("COPY events, line 3", 10)
	f.Add("COPY events, line 1, column tenant_id", 1)
	f.Add("COPY events, line 0", 5)
	f.Add("COPY events, line 99999999999999999999", 5)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, where string, rows int) {
		got := copyErrorRow(&pgconn.PgError{Where: where}, rows)
		if got != -1 && (got < 0 || got >= rows) {
			t.Fatalf("copyErrorRow(%q, %d) = %d, want -1 or a row in [0, %d)", where, rows, got, rows)
		}
		if rows >= 1 {
			last := fmt.Sprintf("COPY events, line %d", rows)
			if got := copyErrorRow(&pgconn.PgError{Where: last}, rows); got != rows-1 {
				t.Fatalf("copyErrorRow(%q, %d) = %d, want %d", last, rows, got, rows-1)
			}
		}
	})
}

func TestCopyErrorRow(t *testing.T) {
	t.Parallel()
	for where, want := range map[string]int{
		"COPY events, line 3":                   2,
		"COPY event_dedup, line 1, column x: y": 0,
		"COPY events, line 11":                  -1, // out of range for 10 rows
		"COPY events, line 0":                   -1,
		"COPY events, line x":                   -1,
		"COPY events":                           -1,
		"PL/pgSQL function f() line 3 at RAISE": -1,
	} {
		require.Equal(t, want, copyErrorRow(&pgconn.PgError{Where: where}, 10), where)
	}
}
