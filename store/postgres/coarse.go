package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/jackc/pgx/v5"
)

// The hourly and daily rollups' unique-user sketches are rebuilt from the
// finer rollups after the fact (migration 006): ApplyBatch adds a batch's
// users to the minute sketches only and marks the hour and day rows it
// touched users_pending. MergeCoarseSketches clears the marks, hours from
// their minutes and days from their hours, and readers of a pending row
// merge the finer rows themselves (coarseSketch), so an answer never misses
// a user either way.
//
// Why this is safe against concurrent batches, and never deadlocks with
// them: the merge reads the pending rows with their row versions (xmin),
// then the finer rows as committed at that moment, and merges in Go. Then,
// in a short transaction, it locks the rows still at the version it read, in
// key order, skipping rows a batch has locked (FOR UPDATE SKIP LOCKED), and
// writes the merged sketches to those. A batch that changed a bucket since
// the read (every batch that adds users to a minute also upserts its hour
// and day, in the same transaction) changed the row's version, and one that
// is writing it holds its lock: either way the row stays pending for the
// next merge. The merge never waits for a batch, so the two cannot wait for
// each other. A day is merged only from hours that are not pending, and
// otherwise stays pending.

// Statements of MergeCoarseSketches and coarseSketch; %[1]s is the coarse
// table, %[2]s the finer one, %[3]s the coarse bucket width.
const (
	// sqlPendingCoarse returns up to $1 pending rows of a coarse table and
	// their row versions.
	sqlPendingCoarse = `
SELECT tenant_id, event_type, bucket, xmin::text
FROM %[1]s
WHERE users_pending
ORDER BY tenant_id, event_type, bucket
LIMIT $1`

	// sqlFinerSketches returns, for each coarse bucket given, the sketches
	// of its finer rows and whether each is pending itself (minutes never
	// are), in bucket order. The lateral subquery scans the finer table's
	// primary key once per bucket.
	sqlFinerSketches = `
SELECT c.ord, f.users_hll, f.users_pending
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS c (tenant_id, event_type, bucket, ord)
CROSS JOIN LATERAL (
    SELECT users_hll, %[4]s AS users_pending
    FROM %[2]s
    WHERE tenant_id = c.tenant_id AND event_type = c.event_type
      AND bucket >= c.bucket AND bucket < c.bucket + INTERVAL '%[3]s'
      AND (users_hll IS NOT NULL OR %[4]s)
) f
ORDER BY c.ord`

	// sqlLockCoarse locks, in key order, the given rows that are still at
	// the version read and that no batch has locked, and returns their
	// positions in the arrays. The transaction turns off hash and merge
	// joins (sqlLockCoarseJoins), so each key is an index lookup rather than
	// a scan of the table.
	sqlLockCoarse = `
SELECT t.ord
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) WITH ORDINALITY
     AS t (tenant_id, event_type, bucket, version, ord)
JOIN %[1]s AS r ON r.tenant_id = t.tenant_id AND r.event_type = t.event_type AND r.bucket = t.bucket
WHERE r.xmin = t.version::xid
ORDER BY r.tenant_id, r.event_type, r.bucket
FOR UPDATE OF r SKIP LOCKED`

	sqlLockCoarseJoins = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)`

	// sqlStoreCoarse writes merged sketches to rows sqlLockCoarse locked
	// and clears their marks.
	sqlStoreCoarse = `
UPDATE %[1]s AS r
SET users_hll = t.users_hll, users_pending = false
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bytea[]) AS t (tenant_id, event_type, bucket, users_hll)
WHERE r.tenant_id = t.tenant_id AND r.event_type = t.event_type AND r.bucket = t.bucket`
)

// coarseLevel names the SQL parts of a coarse level and the level below it.
type coarseLevel struct {
	table, finer, width string
	// finerPending is the finer table's users_pending, or false for minutes.
	finerPending string
}

var (
	coarseHours = coarseLevel{table: "rollups_1h", finer: "rollups_1m", width: "1 hour", finerPending: "false"}
	coarseDays  = coarseLevel{table: "rollups_1d", finer: "rollups_1h", width: "1 day", finerPending: "users_pending"}
	// coarseDaysFromMinutes reads a day's users from its minutes, for a
	// reader of a day whose hours are pending too.
	coarseDaysFromMinutes = coarseLevel{table: "rollups_1d", finer: "rollups_1m", width: "1 day", finerPending: "false"}
)

func (c coarseLevel) sql(format string) string {
	return fmt.Sprintf(format, c.table, c.finer, c.width, c.finerPending)
}

// querier runs a query: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// coarseKeys are coarse rows as parallel arrays, with their row versions
// where read.
type coarseKeys struct {
	tenants, types []string
	buckets        []time.Time
	versions       []string
}

// MergeCoarseSketches rebuilds the unique-user sketches of up to limit
// pending hourly rollup rows from their minutes, then of up to limit pending
// daily rows from their hours, and returns how many rows it merged. Rows a
// batch changed meanwhile stay pending, and so do days with an hour still
// pending. Run it until it merges fewer than limit rows to catch up; any
// number of processes may run it at once.
func (db *DB) MergeCoarseSketches(ctx context.Context, limit int) (int, error) {
	if limit < 1 {
		return 0, invalidf("postgres: merge coarse sketches", "limit %d, want at least 1", limit)
	}
	merged := 0
	for _, level := range []coarseLevel{coarseHours, coarseDays} {
		n, err := db.mergeCoarseLevel(ctx, level, limit)
		if err != nil {
			return merged, wrapErr("postgres: merge coarse sketches of "+level.table, err)
		}
		merged += n
	}
	return merged, nil
}

// mergeCoarseLevel merges up to limit pending rows of one coarse level.
func (db *DB) mergeCoarseLevel(ctx context.Context, level coarseLevel, limit int) (int, error) {
	rows, err := db.pool.Query(ctx, level.sql(sqlPendingCoarse), limit)
	if err != nil {
		return 0, err
	}
	var (
		keys    coarseKeys
		tenant  string
		typ     string
		bucket  time.Time
		version string
	)
	if _, err := pgx.ForEachRow(rows, []any{&tenant, &typ, &bucket, &version}, func() error {
		keys.tenants = append(keys.tenants, tenant)
		keys.types = append(keys.types, typ)
		keys.buckets = append(keys.buckets, bucket)
		keys.versions = append(keys.versions, version)
		return nil
	}); err != nil {
		return 0, err
	}
	if len(keys.buckets) == 0 {
		return 0, nil
	}
	sketches, complete, err := finerSketches(ctx, db.pool, level, keys)
	if err != nil {
		return 0, err
	}
	var (
		out     coarseKeys
		encoded [][]byte
	)
	for i := range keys.buckets {
		if !complete[i] {
			continue // a day with an hour still pending
		}
		var enc []byte
		if sketches[i] != nil {
			if enc, err = encodeSketch(sketches[i]); err != nil {
				return 0, err
			}
		}
		out.tenants = append(out.tenants, keys.tenants[i])
		out.types = append(out.types, keys.types[i])
		out.buckets = append(out.buckets, keys.buckets[i])
		out.versions = append(out.versions, keys.versions[i])
		encoded = append(encoded, enc)
	}
	if len(out.buckets) == 0 {
		return 0, nil
	}
	return db.storeCoarse(ctx, level, out, encoded)
}

// storeCoarse writes the merged sketches of the rows of keys (encoded, in
// the same order) that are still at the version read and not locked by a
// batch, and returns how many it wrote.
func (db *DB) storeCoarse(ctx context.Context, level coarseLevel, keys coarseKeys, encoded [][]byte) (int, error) {
	stored := 0
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		stored = 0
		if _, err := tx.Exec(ctx, sqlLockCoarseJoins); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, level.sql(sqlLockCoarse), keys.tenants, keys.types, keys.buckets, keys.versions)
		if err != nil {
			return err
		}
		var (
			locked coarseKeys
			sks    [][]byte
			ord    int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&ord}, func() error {
			i := int(ord - 1)
			if i < 0 || i >= len(keys.buckets) {
				return fmt.Errorf("lock: row %d of %d", ord, len(keys.buckets))
			}
			locked.tenants = append(locked.tenants, keys.tenants[i])
			locked.types = append(locked.types, keys.types[i])
			locked.buckets = append(locked.buckets, keys.buckets[i])
			sks = append(sks, encoded[i])
			return nil
		}); err != nil {
			return err
		}
		if len(sks) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, level.sql(sqlStoreCoarse), locked.tenants, locked.types, locked.buckets, sks)
		stored = int(tag.RowsAffected())
		return err
	})
	return stored, err
}

// finerSketches merges, for each coarse row of keys, the sketches of its
// finer rows: nil where none has users. complete is false for a row with a
// finer row that is pending itself, whose merge would miss users.
func finerSketches(ctx context.Context, q querier, level coarseLevel, keys coarseKeys) ([]*hyperloglog.Sketch, []bool, error) {
	rows, err := q.Query(ctx, level.sql(sqlFinerSketches), keys.tenants, keys.types, keys.buckets)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	sketches := make([]*hyperloglog.Sketch, len(keys.buckets))
	complete := make([]bool, len(keys.buckets))
	for i := range complete {
		complete[i] = true
	}
	var (
		ord     int64
		stored  []byte
		pending bool
	)
	for rows.Next() {
		stored = nil
		if err := rows.Scan(&ord, &stored, &pending); err != nil {
			return nil, nil, err
		}
		i := int(ord - 1)
		if i < 0 || i >= len(sketches) {
			return nil, nil, fmt.Errorf("finer sketches: row for bucket %d of %d", ord, len(sketches))
		}
		if pending {
			complete[i] = false
		}
		if stored == nil {
			continue
		}
		if err := mergeInto(&sketches[i], stored); err != nil {
			return nil, nil, fmt.Errorf("%s/%s at %s: %w", keys.tenants[i], keys.types[i],
				keys.buckets[i].UTC().Format(time.RFC3339), err)
		}
	}
	return sketches, complete, rows.Err()
}

// mergeInto merges the stored sketch into *dst (see mergeSketch).
func mergeInto(dst **hyperloglog.Sketch, stored []byte) error {
	sk, err := decodeSketch(stored)
	if err != nil {
		return err
	}
	return mergeSketch(dst, sk)
}

// mergeSketch merges sk into *dst, or makes *dst sk if it is nil.
func mergeSketch(dst **hyperloglog.Sketch, sk *hyperloglog.Sketch) error {
	if *dst == nil {
		*dst = sk
		return nil
	}
	if err := (*dst).Merge(sk); err != nil {
		return fmt.Errorf("%w: %w", errBadSketch, err)
	}
	return nil
}
