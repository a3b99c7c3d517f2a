package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// migrationFiles holds the numbered migrations (NNN_name.sql). They are
// text/template files evaluated with [migrationData] before they run.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable records the applied migration number. It is left unqualified
// so the whole schema, this table included, follows the connection's
// search_path.
const versionTable = "abacus_schema_version"

// templateTimescale is the template data key that migration files test with
// {{ if .Timescale }} ... {{ end }}: true selects hypertables over plain
// tables (see [DB.Timescale]). Keys are part of the migration files' contract.
const templateTimescale = "Timescale"

// Migrate brings the schema of db up to the newest embedded migration. It is
// safe to run repeatedly and from several processes at once: tern holds a
// PostgreSQL advisory lock (pg_advisory_lock) for the whole run, so concurrent
// migrators wait for each other and the second finds nothing to do. Each
// migration runs in its own transaction together with its version bump.
//
// Migrate uses a dedicated connection without the pool's statement_timeout
// (ctx bounds it instead) and closes it afterwards, which also releases the
// session-level advisory lock if ctx ended mid-run.
func Migrate(ctx context.Context, db *DB) error {
	cc := db.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["statement_timeout"] = "0"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: migrate: connect: %w", err)
	}
	defer func() {
		// Closing with a cancelled ctx still closes the socket, ending the
		// session and any lock it held.
		_ = conn.Close(ctx)
	}()

	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("postgres: migrate: prepare version table: %w", err)
	}
	timescale := db.Timescale()
	m.Data[templateTimescale] = timescale

	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("postgres: migrate: load migrations: %w", err)
	}
	m.OnStart = func(sequence int32, name, direction, _ string) {
		db.logger.InfoContext(ctx, "applying migration",
			slog.Int("sequence", int(sequence)), slog.String("name", name),
			slog.String("direction", direction), slog.Bool("timescale", timescale))
	}

	before, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: read version: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	after, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: read version: %w", err)
	}
	if err := db.detectTimescale(ctx); err != nil {
		return err
	}
	db.logger.InfoContext(ctx, "migrations done",
		slog.Int("from_version", int(before)), slog.Int("to_version", int(after)),
		slog.Bool("timescale", db.Timescale()))
	return nil
}
