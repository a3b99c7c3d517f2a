package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the PostgreSQL store: a connection pool plus the named queries of
// this package. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	cfg    Config
	logger *slog.Logger

	// timescale caches the result of detectTimescale; Migrate refreshes it.
	timescale atomic.Bool

	// recent holds the event keys ApplyBatch committed lately, to pick the
	// cheaper way to claim a batch's keys (see claims.go).
	recent *recentKeys
}

// Open validates cfg, connects, pings the server and detects TimescaleDB, all
// bounded by ctx. It starts nothing else: the pool's own health checks are
// its only background work, and [DB.Close] stops them.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	db := &DB{pool: pool, cfg: cfg, logger: logger, recent: newRecentKeys()}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.detectTimescale(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	logger.InfoContext(ctx, "postgres connected",
		slog.String("host", pc.ConnConfig.Host),
		slog.String("database", pc.ConnConfig.Database),
		slog.Int("max_conns", int(pc.MaxConns)),
		slog.Bool("timescale", db.Timescale()))
	return db, nil
}

// Ping checks that a pooled connection reaches the server.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes every pooled connection, waiting for acquired ones to be
// released. The DB must not be used afterwards.
func (db *DB) Close() {
	db.pool.Close()
}

// Pool returns the underlying pool, for health checks, metrics and tests.
// Application queries belong in this package, as named constants.
func (db *DB) Pool() *pgxpool.Pool {
	return db.pool
}

// Timescale reports whether the analytics tables (events, rollups_1m) are
// TimescaleDB hypertables in this database, or — before the first migration
// — will be created as such by [Migrate]. See doc.go for the rules.
func (db *DB) Timescale() bool {
	return db.timescale.Load()
}

// SQL for detectTimescale. pg_settings hides shared_preload_libraries from
// roles that may not read it, which then reads as "not preloaded" instead of
// failing the query.
const (
	sqlDetectTimescale = `
SELECT
    EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb') AS available,
    EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'timescaledb') AS installed,
    coalesce((SELECT setting FROM pg_catalog.pg_settings WHERE name = 'shared_preload_libraries'), '')
        LIKE '%timescaledb%' AS preloaded,
    to_regclass('events') IS NOT NULL AS migrated`

	// Only valid once the extension is installed (the view lives in it).
	sqlEventsIsHypertable = `
SELECT EXISTS (
    SELECT 1 FROM timescaledb_information.hypertables
    WHERE hypertable_schema = current_schema() AND hypertable_name = 'events')`
)

// detectTimescale decides the schema layout and stores it in db.timescale.
//
// A migrated database keeps the layout it was created with (events is a
// hypertable or it is not), so installing TimescaleDB later never leaves
// later migrations or queries assuming hypertables that do not exist. A fresh
// database uses Timescale when the extension is installable: listed in
// pg_available_extensions and either already created or preloaded (TimescaleDB
// refuses CREATE EXTENSION unless it is in shared_preload_libraries).
func (db *DB) detectTimescale(ctx context.Context) error {
	var available, installed, preloaded, migrated bool
	if err := db.pool.QueryRow(ctx, sqlDetectTimescale).Scan(&available, &installed, &preloaded, &migrated); err != nil {
		return fmt.Errorf("postgres: detect timescaledb: %w", err)
	}
	var use bool
	switch {
	case migrated && installed:
		if err := db.pool.QueryRow(ctx, sqlEventsIsHypertable).Scan(&use); err != nil {
			return fmt.Errorf("postgres: detect timescaledb hypertables: %w", err)
		}
	case migrated:
		use = false
	default:
		use = !db.cfg.DisableTimescale && available && (installed || preloaded)
	}
	db.timescale.Store(use)
	db.logger.DebugContext(ctx, "timescaledb detection",
		slog.Bool("available", available), slog.Bool("installed", installed),
		slog.Bool("preloaded", preloaded), slog.Bool("migrated", migrated),
		slog.Bool("timescale", use))
	return nil
}
