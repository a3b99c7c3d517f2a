package postgres_test

import (
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// migrateTo applies the migrations of this package's migrations/ directory up
// to version, as Migrate would, and no further.
func migrateTo(t *testing.T, db *postgres.DB, version int32) {
	t.Helper()
	conn, err := pgx.ConnectConfig(t.Context(), db.Pool().Config().ConnConfig.Copy())
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(t.Context())) }()
	m, err := migrate.NewMigrator(t.Context(), conn, "abacus_schema_version")
	require.NoError(t, err)
	m.Data["Timescale"] = db.Timescale()
	require.NoError(t, m.LoadMigrations(os.DirFS("migrations")))
	require.NoError(t, m.MigrateTo(t.Context(), version))
}

func TestMigration002UpgradesExistingRows(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})
	migrateTo(t, db, 1)

	// Rows written by a version that knew only the initial schema.
	_, err := db.Pool().Exec(t.Context(), `INSERT INTO tenants (tenant_id, display_name) VALUES ('acme', 'Acme')`)
	require.NoError(t, err)
	_, err = db.Pool().Exec(t.Context(),
		`INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes) VALUES ('key-1', 'acme', '\x01', '{ingest}')`)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(t.Context(), db))
	requireSchema(t, db)

	tn, err := db.GetTenant(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, tenancy.LimitOverrides{}, tn.Limits, "existing tenants start without overrides")
	var doc string
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT limits::text FROM tenants WHERE tenant_id = 'acme'`).Scan(&doc))
	require.Equal(t, "{}", doc)

	keys, err := db.ListAPIKeys(t.Context(), "acme", 10, "")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Empty(t, keys[0].ReplacedBy)

	overrides, err := db.LoadLimitOverrides(t.Context())
	require.NoError(t, err)
	require.Empty(t, overrides)

	// The new columns are guarded.
	_, err = db.Pool().Exec(t.Context(), `UPDATE tenants SET limits = '[]' WHERE tenant_id = 'acme'`)
	require.ErrorContains(t, err, "tenants_limits_object_check")
	_, err = db.Pool().Exec(t.Context(), `UPDATE api_keys SET replaced_by = 'nope' WHERE key_id = 'key-1'`)
	require.ErrorContains(t, err, "api_keys_replaced_by_fkey")
}

func TestDeletingTenantWithRotatedKeys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme"})
	require.NoError(t, err)
	_, err = db.CreateAPIKey(t.Context(), "acme", postgres.APIKey{ID: "key-1", Hash: []byte("h1"), Scopes: []string{"ingest"}})
	require.NoError(t, err)
	_, _, err = db.RotateAPIKey(t.Context(), "acme", "key-1", time.Hour, postgres.APIKey{ID: "key-2", Hash: []byte("h2")})
	require.NoError(t, err)

	tag, err := db.Pool().Exec(t.Context(), `DELETE FROM tenants WHERE tenant_id = 'acme'`)
	require.NoError(t, err, "the successor reference does not block the cascade")
	require.EqualValues(t, 1, tag.RowsAffected())
	var n int
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM api_keys`).Scan(&n))
	require.Zero(t, n)
}
