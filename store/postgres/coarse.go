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
// Why this is safe against concurrent batches: the merge locks the pending
// rows it takes (FOR UPDATE SKIP LOCKED, so it never waits for a batch and
// never deadlocks with one) and reads the finer rows as committed when each
// statement starts. A batch that committed before then is in what it reads.
// A batch that commits later marks the row pending again, either because it
// reaches the row after the merge released it, or because it is holding the
// row's lock, and then the merge skips the row. A day is merged only from
// hours that are not pending (within the merge's own transaction, where the
// hours it just merged are not), and otherwise stays pending.

// Statements of MergeCoarseSketches and coarseSketch; %[1]s is the coarse
// table, %[2]s the finer one, %[3]s the coarse bucket width.
const (
	// sqlPendingCoarse takes up to $1 pending rows of a coarse table.
	sqlPendingCoarse = `
SELECT tenant_id, event_type, bucket
FROM %[1]s
WHERE users_pending
ORDER BY tenant_id, event_type, bucket
LIMIT $1
FOR UPDATE SKIP LOCKED`

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

	// sqlStoreCoarse writes merged sketches and clears the marks.
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

// coarseKeys are coarse rows as parallel arrays.
type coarseKeys struct {
	tenants, types []string
	buckets        []time.Time
}

// MergeCoarseSketches rebuilds the unique-user sketches of up to limit
// pending hourly rollup rows from their minutes, and of up to limit pending
// daily rows from their hours, in one transaction, and returns how many rows
// it merged. Rows a batch is writing are skipped (their batch marks them
// pending again anyway), and so are days with an hour still pending. Run it
// until it merges fewer than limit rows to catch up; any number of processes
// may run it at once.
func (db *DB) MergeCoarseSketches(ctx context.Context, limit int) (int, error) {
	if limit < 1 {
		return 0, invalidf("postgres: merge coarse sketches", "limit %d, want at least 1", limit)
	}
	merged := 0
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		merged = 0
		for _, level := range []coarseLevel{coarseHours, coarseDays} {
			n, err := mergeCoarseLevel(ctx, tx, level, limit)
			if err != nil {
				return fmt.Errorf("%s: %w", level.table, err)
			}
			merged += n
		}
		return nil
	})
	if err != nil {
		return 0, wrapErr("postgres: merge coarse sketches", err)
	}
	return merged, nil
}

// mergeCoarseLevel merges up to limit pending rows of one coarse level.
func mergeCoarseLevel(ctx context.Context, tx pgx.Tx, level coarseLevel, limit int) (int, error) {
	rows, err := tx.Query(ctx, level.sql(sqlPendingCoarse), limit)
	if err != nil {
		return 0, err
	}
	var (
		keys   coarseKeys
		tenant string
		typ    string
		bucket time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&tenant, &typ, &bucket}, func() error {
		keys.tenants = append(keys.tenants, tenant)
		keys.types = append(keys.types, typ)
		keys.buckets = append(keys.buckets, bucket)
		return nil
	}); err != nil {
		return 0, err
	}
	if len(keys.buckets) == 0 {
		return 0, nil
	}
	sketches, complete, err := finerSketches(ctx, tx, level, keys)
	if err != nil {
		return 0, err
	}
	var out struct {
		coarseKeys
		encoded [][]byte
	}
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
		out.encoded = append(out.encoded, enc)
	}
	if len(out.buckets) == 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, level.sql(sqlStoreCoarse), out.tenants, out.types, out.buckets, out.encoded); err != nil {
		return 0, err
	}
	return len(out.buckets), nil
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

// mergeInto merges the stored sketch into *dst, decoding it into *dst if
// that is nil.
func mergeInto(dst **hyperloglog.Sketch, stored []byte) error {
	sk, err := decodeSketch(stored)
	if err != nil {
		return err
	}
	if *dst == nil {
		*dst = sk
		return nil
	}
	if err := (*dst).Merge(sk); err != nil {
		return fmt.Errorf("%w: %w", errBadSketch, err)
	}
	return nil
}
