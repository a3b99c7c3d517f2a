package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/store/postgres"
)

func TestMain(m *testing.M) {
	devstacktest.Main(m)
}

// openDB opens a DB on a fresh, unmigrated database of the test PostgreSQL.
func openDB(t testing.TB, cfg postgres.Config) *postgres.DB {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = devstacktest.Postgres(t)
	}
	db, err := postgres.Open(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

// newDB returns a migrated DB on a fresh database.
func newDB(t testing.TB) *postgres.DB {
	t.Helper()
	db := openDB(t, postgres.Config{})
	require.NoError(t, postgres.Migrate(t.Context(), db))
	return db
}

// minute is a fixed, minute-aligned instant that tests build times from.
var minute = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }
