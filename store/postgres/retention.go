package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

// RetentionPolicy is how long one tenant's data is kept.
type RetentionPolicy struct {
	// Tenant owns the data.
	Tenant tenancy.ID
	// Raw is how long raw events and their dedup keys are kept: an event
	// goes once its event time is more than Raw ago.
	Raw time.Duration
	// Rollup is how long rollups are kept: a rollup row goes once all of
	// its bucket (minute, hour or day) is more than Rollup ago.
	Rollup time.Duration
}

// RetentionResult reports what [DB.EnforceRetention] deleted.
type RetentionResult struct {
	// Deleted counts the rows deleted by DELETE statements, per table:
	// events, event_dedup, rollups_1m, rollups_1h and rollups_1d.
	Deleted map[string]int64
	// DroppedChunks counts the TimescaleDB chunks dropped whole, per
	// hypertable; the rows they held are not counted in Deleted.
	DroppedChunks map[string]int64
}

// Tables that retention deletes from besides the rollup tables, as
// RetentionResult names them.
const (
	tableEvents     = "events"
	tableEventDedup = "event_dedup"
)

// retentionChunkRows bounds the rows of one DELETE of the plain layout, and
// of event_dedup on both layouts. Each statement is its own transaction, so
// retention never holds many row locks or much undo at once, and the rollup
// consumer's transactions never wait long behind it.
const retentionChunkRows = 10_000

// retentionTypesPage is how many event types one loose index scan returns.
const retentionTypesPage = 1000

// retentionTable is a table that retention deletes from, with its named
// statements.
type retentionTable struct {
	name string
	// width is the bucket width of a rollup table, 0 for events.
	width time.Duration
	// slice is the span of event or bucket time that one DELETE of the
	// Timescale layout covers (see deleteSlices).
	slice time.Duration

	// Plain layout.
	sqlNextTypes   string
	sqlDeleteChunk string
	// Timescale layout.
	sqlOldest      string
	sqlDeleteSlice string
	sqlDropChunks  string
}

// newRetentionTable builds the statements for table, whose time column is
// column. Both are constants of this file, never input.
func newRetentionTable(name, column string, width, slice time.Duration) retentionTable {
	return retentionTable{
		name:  name,
		width: width,
		slice: slice,
		// A loose index scan: every distinct event type of the tenant,
		// each found by one descent of the (tenant_id, event_type, ...)
		// index, up to $3 of them after $2.
		sqlNextTypes: `
WITH RECURSIVE types (event_type, n) AS (
    (SELECT event_type, 1 FROM ` + name + `
     WHERE tenant_id = $1 AND event_type > $2
     ORDER BY event_type LIMIT 1)
    UNION ALL
    SELECT (SELECT x.event_type FROM ` + name + ` AS x
            WHERE x.tenant_id = $1 AND x.event_type > types.event_type
            ORDER BY x.event_type LIMIT 1),
           types.n + 1
    FROM types
    WHERE types.event_type IS NOT NULL AND types.n < $3
)
SELECT event_type FROM types WHERE event_type IS NOT NULL`,
		// Up to $4 rows of one tenant and event type older than $3: an
		// index range scan picks them, a TID scan deletes them. The
		// conditions are repeated on the deleted rows, so nothing else can
		// be deleted whatever happened to a row between the two.
		sqlDeleteChunk: `
DELETE FROM ` + name + `
WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM ` + name + `
        WHERE tenant_id = $1 AND event_type = $2 AND ` + column + ` < $3
        ORDER BY ` + column + `
        LIMIT $4))
  AND tenant_id = $1 AND event_type = $2 AND ` + column + ` < $3`,
		sqlOldest: `
SELECT ` + column + ` FROM ` + name + `
WHERE tenant_id = $1 AND ` + column + ` < $2
ORDER BY ` + column + `
LIMIT 1`,
		sqlDeleteSlice: `
DELETE FROM ` + name + `
WHERE tenant_id = $1 AND ` + column + ` >= $2 AND ` + column + ` < $3`,
		sqlDropChunks: `
SELECT count(*) FROM drop_chunks('` + name + `', older_than => $1::timestamptz)`,
	}
}

// The tables retention deletes from. The slices keep one Timescale DELETE
// to an hour of a tenant's events, or at most 1,440 rollup rows per event
// type.
var (
	retentionEvents  = newRetentionTable(tableEvents, "event_time", 0, time.Hour)
	retentionRollups = []retentionTable{
		newRetentionTable("rollups_1m", "bucket", time.Minute, 24*time.Hour),
		newRetentionTable("rollups_1h", "bucket", time.Hour, 30*24*time.Hour),
		newRetentionTable("rollups_1d", "bucket", 24*time.Hour, 366*24*time.Hour),
	}
)

// Named retention statements that are not per table.
const (
	// The dedup table is dropped from the plain layout by a later schema
	// version (its key moves into events), so whether it exists is asked.
	sqlEventDedupExists = `SELECT to_regclass('event_dedup') IS NOT NULL`

	// Served by event_dedup_tenant_time_idx (migration 007).
	sqlDeleteDedupChunk = `
DELETE FROM event_dedup
WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM event_dedup
        WHERE tenant_id = $1 AND event_time < $2
        ORDER BY event_time
        LIMIT $3))
  AND tenant_id = $1 AND event_time < $2`

	// The lock is keyed by a 64-bit hash of its name.
	sqlTryAdvisoryLock = `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`
)

// EnforceRetention deletes, for each policy's tenant, the raw events and
// their dedup keys whose event time is before now-Raw, and the rollup rows
// whose whole bucket ends at or before now-Rollup. Tenants without a policy
// keep their rows, except that on TimescaleDB whole chunks past every
// policy's retention are dropped first (see doc.go, "Retention").
//
// Deletion goes in bounded statements, each its own transaction, so a
// failure leaves what was deleted deleted: the result counts it, with the
// error, and the next call carries on. Deleting the same rows twice, from
// two processes at once or after a failure, is harmless.
func (db *DB) EnforceRetention(ctx context.Context, policies []RetentionPolicy, now time.Time) (RetentionResult, error) {
	const op = "postgres: enforce retention"
	res := RetentionResult{Deleted: map[string]int64{}, DroppedChunks: map[string]int64{}}
	if err := validatePolicies(policies, now); err != nil {
		return res, invalidf(op, "%v", err)
	}
	if len(policies) == 0 {
		return res, nil
	}
	var dedup bool
	if err := db.pool.QueryRow(ctx, sqlEventDedupExists).Scan(&dedup); err != nil {
		return res, wrapErr(op, err)
	}
	if db.Timescale() {
		if err := db.dropExpiredChunks(ctx, policies, now, &res); err != nil {
			return res, err
		}
	}
	for _, p := range policies {
		if err := db.enforceTenantRetention(ctx, p, now, dedup, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func validatePolicies(policies []RetentionPolicy, now time.Time) error {
	if now.IsZero() {
		return errors.New("now is the zero time")
	}
	for _, p := range policies {
		if p.Tenant == "" || p.Raw <= 0 || p.Rollup <= 0 {
			return fmt.Errorf("policy %+v needs a tenant and positive retentions", p)
		}
	}
	return nil
}

// enforceTenantRetention deletes one tenant's expired rows: raw events
// first, then their dedup keys (a key must never go before its event, or a
// replay of the event would be stored again), then the rollups.
func (db *DB) enforceTenantRetention(ctx context.Context, p RetentionPolicy, now time.Time, dedup bool, res *RetentionResult) error {
	op := fmt.Sprintf("postgres: enforce retention of tenant %q", p.Tenant)
	rawCutoff := now.Add(-p.Raw)
	if err := db.deleteExpired(ctx, retentionEvents, p.Tenant, rawCutoff, res); err != nil {
		return wrapErr(op, err)
	}
	if dedup {
		n, err := db.deleteInChunks(ctx, sqlDeleteDedupChunk, string(p.Tenant), rawCutoff)
		res.Deleted[tableEventDedup] += n
		if err != nil {
			return wrapErr(op+": event_dedup", err)
		}
	}
	for _, t := range retentionRollups {
		// A bucket [b, b+width) is past the cutoff c when b+width <= c. Buckets
		// are aligned to their width, so that is b < c truncated to the width.
		if err := db.deleteExpired(ctx, t, p.Tenant, now.Add(-p.Rollup).Truncate(t.width), res); err != nil {
			return wrapErr(op, err)
		}
	}
	return nil
}

// deleteExpired deletes the tenant's rows of t whose time is before cutoff,
// the way the layout allows.
func (db *DB) deleteExpired(ctx context.Context, t retentionTable, tenant tenancy.ID, cutoff time.Time, res *RetentionResult) error {
	var (
		n   int64
		err error
	)
	if db.Timescale() {
		n, err = db.deleteSlices(ctx, t, tenant, cutoff)
	} else {
		n, err = db.deleteByType(ctx, t, tenant, cutoff)
	}
	res.Deleted[t.name] += n
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	return nil
}

// deleteByType deletes on the plain layout. Its indexes lead with
// (tenant_id, event_type), so a condition on the time alone would scan every
// row of the tenant for each chunk; instead each event type of the tenant,
// found by a loose index scan, gets index range scans of its expired rows.
func (db *DB) deleteByType(ctx context.Context, t retentionTable, tenant tenancy.ID, cutoff time.Time) (int64, error) {
	var total int64
	after := ""
	for {
		rows, err := db.pool.Query(ctx, t.sqlNextTypes, string(tenant), after, retentionTypesPage)
		if err != nil {
			return total, err
		}
		types, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return total, err
		}
		for _, typ := range types {
			n, err := db.deleteInChunks(ctx, t.sqlDeleteChunk, string(tenant), typ, cutoff)
			total += n
			if err != nil {
				return total, err
			}
		}
		if len(types) < retentionTypesPage {
			return total, nil
		}
		after = types[len(types)-1]
	}
}

// deleteInChunks runs a DELETE whose last parameter is the chunk size until
// a chunk comes back short, and returns the rows deleted.
func (db *DB) deleteInChunks(ctx context.Context, sql string, args ...any) (int64, error) {
	args = append(args, retentionChunkRows)
	var total int64
	for {
		tag, err := db.pool.Exec(ctx, sql, args...)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < retentionChunkRows {
			return total, nil
		}
	}
}

// deleteSlices deletes on the Timescale layout: from the tenant's oldest
// expired row on, one slice of time per statement. A DELETE there keeps to
// plain comparisons of the tenant and the time column: TimescaleDB applies
// those to compressed chunks by segment (tenant_id) and time range, while a
// subquery (such as the plain layout's ctid list) is not safe on compressed
// chunks (timescale/timescaledb#6781), and ctids repeat across chunks
// anyway. Each statement covers t.slice of one tenant's rows instead of a
// row count.
func (db *DB) deleteSlices(ctx context.Context, t retentionTable, tenant tenancy.ID, cutoff time.Time) (int64, error) {
	var total int64
	for {
		var oldest time.Time
		err := db.pool.QueryRow(ctx, t.sqlOldest, string(tenant), cutoff).Scan(&oldest)
		if errors.Is(err, pgx.ErrNoRows) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		end := oldest.Add(t.slice)
		if end.After(cutoff) {
			end = cutoff
		}
		tag, err := db.pool.Exec(ctx, t.sqlDeleteSlice, string(tenant), oldest, end)
		if err != nil {
			return total, err
		}
		if tag.RowsAffected() == 0 {
			// The oldest row was there a statement ago: rather than look
			// for it again and again, give up until the next call.
			return total, fmt.Errorf("deleting from %s found nothing at %s, where a row was", t.name, oldest.UTC().Format(time.RFC3339Nano))
		}
		total += tag.RowsAffected()
	}
}

// dropExpiredChunks drops the chunks of each hypertable that hold only rows
// past the longest retention of any policy, so that most expired data goes
// without a DELETE. A chunk is dropped when its range ends at or before
// older_than; a rollup hypertable's older_than is a further bucket width
// earlier, so that every bucket in a dropped chunk has ended by the cutoff
// whatever the chunk boundaries. The dedup keys of dropped events go with
// each tenant's DELETEs that follow.
func (db *DB) dropExpiredChunks(ctx context.Context, policies []RetentionPolicy, now time.Time, res *RetentionResult) error {
	var longestRaw, longestRollup time.Duration
	for _, p := range policies {
		longestRaw = max(longestRaw, p.Raw)
		longestRollup = max(longestRollup, p.Rollup)
	}
	drop := func(t retentionTable, olderThan time.Time) error {
		var n int64
		if err := db.pool.QueryRow(ctx, t.sqlDropChunks, olderThan).Scan(&n); err != nil {
			return wrapErr("postgres: enforce retention: drop chunks of "+t.name, err)
		}
		res.DroppedChunks[t.name] += n
		return nil
	}
	if err := drop(retentionEvents, now.Add(-longestRaw)); err != nil {
		return err
	}
	for _, t := range retentionRollups {
		if err := drop(t, now.Add(-longestRollup-t.width)); err != nil {
			return err
		}
	}
	return nil
}

// TryAdvisoryLock takes the PostgreSQL advisory lock called name, if no
// other session holds it, on a connection of its own outside the pool, so
// that holding it never takes a connection from queries. acquired is false,
// with a nil release, when another session holds the lock. Otherwise the
// caller must call release, which ends the session and with it the lock.
//
// The lock lives as long as that session: if the connection breaks, the
// server releases the lock (once it notices), and another process may take
// it while this one still works. Use it to keep work from being repeated
// needlessly, not where running twice at once would be wrong.
func (db *DB) TryAdvisoryLock(ctx context.Context, name string) (release func(context.Context), acquired bool, err error) {
	op := fmt.Sprintf("postgres: try advisory lock %q", name)
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, false, fmt.Errorf("%s: connect: %w", op, err)
	}
	// Closing with a cancelled ctx still closes the socket, ending the
	// session and any lock it held.
	release = func(ctx context.Context) { _ = conn.Close(ctx) }
	if err := conn.QueryRow(ctx, sqlTryAdvisoryLock, name).Scan(&acquired); err != nil {
		release(ctx)
		return nil, false, wrapErr(op, err)
	}
	if !acquired {
		release(ctx)
		return nil, false, nil
	}
	return release, true, nil
}
