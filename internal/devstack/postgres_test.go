package devstack_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// interrupt takes the server down while a session is open.
		interrupt func(*devstack.Postgres) error
	}{
		{name: "stop then restart keeps data and port", interrupt: (*devstack.Postgres).Stop},
		{name: "kill then restart recovers", interrupt: (*devstack.Postgres).Kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			pg, err := devstack.StartPostgres(ctx, t.TempDir(), testLogger(t), devstack.Ephemeral())
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, pg.Stop()) })

			port := pg.Port()
			require.Equal(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), pg.URL("postgres"))

			conn := connectPG(t, pg.URL("postgres"))
			var two int
			require.NoError(t, conn.QueryRow(ctx, "SELECT 1 + 1").Scan(&two))
			require.Equal(t, 2, two)

			var preload, fsync string
			require.NoError(t, conn.QueryRow(ctx, "SHOW shared_preload_libraries").Scan(&preload))
			require.Equal(t, pg.TimescaleAvailable(), preload == "timescaledb")
			require.NoError(t, conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync))
			require.Equal(t, "off", fsync, "Ephemeral clusters run without fsync")

			require.NoError(t, pg.CreateDatabase(ctx, "app"))
			require.NoError(t, pg.CreateDatabase(ctx, "app"), "creating an existing database is a no-op")
			app := connectPG(t, pg.URL("app"))
			_, err = app.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')")
			require.NoError(t, err)

			// app stays open across the interruption: after a kill its
			// orphaned backend must not stop the restart.
			require.NoError(t, tt.interrupt(pg))
			require.NoError(t, pg.Restart(ctx))
			require.Equal(t, port, pg.Port())

			var v string
			require.NoError(t, connectPG(t, pg.URL("app")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
			require.Equal(t, "before", v)
		})
	}
}

func TestStartPostgres_DirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pg, err := devstack.StartPostgres(t.Context(), dir, testLogger(t), devstack.Ephemeral())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pg.Stop()) })

	_, err = devstack.StartPostgres(t.Context(), dir, testLogger(t), devstack.Ephemeral())
	require.ErrorIs(t, err, devstack.ErrDirInUse)
}
