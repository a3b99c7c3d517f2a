package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Granularities accepted by [DB.TimeSeries]. They double as PostgreSQL
// date_trunc field names, which is why only these are accepted.
const (
	GranularityMinute = "minute"
	GranularityHour   = "hour"
	GranularityDay    = "day"
)

// Metrics accepted by [DB.TimeSeries]. Every metric but MetricUniqueUsers is
// exact.
const (
	// MetricCount is the number of distinct events.
	MetricCount = "count"
	// MetricSum is the sum of the values of the events that have one.
	MetricSum = "sum"
	// MetricAvg is the mean value of the events that have one.
	MetricAvg = "avg"
	// MetricMin is the smallest value of the events that have one.
	MetricMin = "min"
	// MetricMax is the largest value of the events that have one.
	MetricMax = "max"
	// MetricUniqueUsers is the estimated number of distinct non-empty user
	// IDs, with a relative standard error of [UniqueUsersRelativeError].
	MetricUniqueUsers = "unique_users"
)

// Point is one non-empty bucket of a time series.
type Point struct {
	// Time is the start of the bucket, in UTC.
	Time time.Time
	// Value is the bucket's aggregate.
	Value float64
	// Updated is when an event last changed the bucket (a late event
	// changes it long after the bucket ended).
	Updated time.Time
}

// seriesSQL returns the query of metric over table. Both come from the
// constants of this package, never from a caller, and are the only parts
// spliced into the SQL; $5, a date_trunc field from the granularity
// whitelist, is bound as a parameter. The range filter is on the rollup
// buckets, so it runs on the primary key (tenant_id, event_type, bucket).
// Value metrics skip rows without values, so a bucket none of whose events
// had a value has no point (the caller fills zero), as an empty bucket.
func seriesSQL(table, metric string) string {
	const (
		selectBucket = `
SELECT date_trunc($5::text, bucket, 'UTC') AS t, `
		from = `
FROM `
		where = `
WHERE tenant_id = $1
  AND event_type = $2
  AND bucket >= $3
  AND bucket < $4`
		withValues = `
  AND value_count > 0`
		group = `
GROUP BY 1
ORDER BY 1`
	)
	switch metric {
	case MetricCount:
		return selectBucket + `max(updated_at), ` + `sum(event_count)::double precision` + from + table + where + group
	case MetricSum:
		return selectBucket + `max(updated_at), ` + `sum(value_sum)` + from + table + where + withValues + group
	case MetricAvg:
		return selectBucket + `max(updated_at), ` + `sum(value_sum) / sum(value_count)` + from + table + where + withValues + group
	case MetricMin:
		return selectBucket + `max(updated_at), ` + `min(value_min)` + from + table + where + withValues + group
	case MetricMax:
		return selectBucket + `max(updated_at), ` + `max(value_max)` + from + table + where + withValues + group
	case MetricUniqueUsers:
		// One row per rollup bucket, in time order: TimeSeries merges the
		// sketches of each requested bucket in Go, and those of the finer
		// rows of a pending hour or day (see coarse.go).
		pending := `false`
		if table != "rollups_1m" {
			pending = `users_pending`
		}
		return selectBucket + `updated_at, users_hll, ` + pending + `, bucket` + from + table + where + `
  AND (users_hll IS NOT NULL OR ` + pending + `)
ORDER BY 1`
	default:
		panic("postgres: seriesSQL: unknown metric " + metric)
	}
}

// seriesLevel returns the coarsest rollup table that answers a series of
// granularity over [start, end) exactly: one whose buckets are no wider than
// the granularity and to whose bucket width start and end are aligned. Its
// buckets then tile the range exactly as the 1-minute buckets do, so the
// result is the same, from fewer rows. rollups_1m always qualifies: the range
// applies to whole rollup minutes.
func seriesLevel(granularity string, start, end time.Time) rollupLevel {
	levels := rollupLevels()
	top := level1m
	switch granularity {
	case GranularityHour:
		top = level1h
	case GranularityDay:
		top = level1d
	}
	for l := top; l > level1m; l-- {
		if aligned(start, levels[l].step) && aligned(end, levels[l].step) {
			return levels[l]
		}
	}
	return levels[level1m]
}

// aligned reports whether t is a multiple of step in UTC. Truncate works on
// absolute time since year 1, whose days have 86400 seconds in Go, so whole
// hours and days truncate to UTC boundaries.
func aligned(t time.Time, step time.Duration) bool {
	return t.Truncate(step).Equal(t)
}

// TimeSeries returns metric (one of the Metric constants) of the events of
// eventType for tenant per UTC minute, hour or day (granularity is one of the
// Granularity constants), over rollup buckets in [start, end). Only non-empty
// buckets are returned, in time order; the caller fills gaps. Because the
// range applies to whole rollup minutes, an unaligned start or end makes the
// first or last bucket partial: callers wanting whole buckets align start and
// end to the granularity, which also lets the query read the hourly or daily
// rollups instead of the minutes.
//
// MetricUniqueUsers points are estimates (see [UniqueUsersRelativeError]):
// each is the merge of the user sketches of the rollup rows in its bucket.
// Their cost grows with the rows read, so callers bound the range.
//
// It returns ErrInvalidArgument for an unknown metric or granularity, or end
// before start.
func (db *DB) TimeSeries(ctx context.Context, tenant tenancy.ID, eventType, metric string,
	start, end time.Time, granularity string) ([]Point, error) {
	op := fmt.Sprintf("postgres: time series %s (tenant %q)", metric, tenant)
	switch metric {
	case MetricCount, MetricSum, MetricAvg, MetricMin, MetricMax, MetricUniqueUsers:
	default:
		return nil, invalidf(op, "metric %q, want one of %q, %q, %q, %q, %q or %q", metric,
			MetricCount, MetricSum, MetricAvg, MetricMin, MetricMax, MetricUniqueUsers)
	}
	switch granularity {
	case GranularityMinute, GranularityHour, GranularityDay:
	default:
		return nil, invalidf(op, "granularity %q, want %q, %q or %q",
			granularity, GranularityMinute, GranularityHour, GranularityDay)
	}
	if end.Before(start) {
		return nil, invalidf(op, "end %s is before start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	level := seriesLevel(granularity, start, end)
	rows, err := db.pool.Query(ctx, seriesSQL(level.table, metric), string(tenant), eventType, start, end, granularity)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	var points []Point
	if metric == MetricUniqueUsers {
		points, err = db.uniqueUserPoints(ctx, rows, level, tenant, eventType)
	} else {
		points, err = valuePoints(rows)
	}
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return points, nil
}

// TimeSeriesCount is TimeSeries with MetricCount.
func (db *DB) TimeSeriesCount(ctx context.Context, tenant tenancy.ID, eventType string,
	start, end time.Time, granularity string) ([]Point, error) {
	return db.TimeSeries(ctx, tenant, eventType, MetricCount, start, end, granularity)
}

func valuePoints(rows pgx.Rows) ([]Point, error) {
	defer rows.Close()
	var points []Point
	for rows.Next() {
		var p Point
		if err := rows.Scan(&p.Time, &p.Updated, &p.Value); err != nil {
			return nil, err
		}
		p.Time, p.Updated = p.Time.UTC(), p.Updated.UTC()
		points = append(points, p)
	}
	return points, rows.Err()
}

// uniqueUserPoints merges the sketches of each bucket, which arrive in time
// order, and estimates their users. Only one bucket's sketch is in memory at
// a time. A pending hour or day row (see coarse.go) stands for the merge of
// its finer rows, read then. The work is in Go, past the server's statement
// timeout (a dense sketch takes about 2 ms to decode and estimate), so it
// stops when ctx ends.
func (db *DB) uniqueUserPoints(ctx context.Context, rows pgx.Rows, level rollupLevel, tenant tenancy.ID,
	eventType string) ([]Point, error) {
	defer rows.Close()
	var (
		points                []Point
		at, updated           time.Time
		users                 *hyperloglog.Sketch
		stored                []byte
		pending               bool
		t, rowUpdated, bucket time.Time
	)
	flush := func() {
		if users != nil {
			points = append(points, Point{Time: at.UTC(), Value: float64(users.Estimate()), Updated: updated.UTC()})
		}
	}
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stored = nil
		if err := rows.Scan(&t, &rowUpdated, &stored, &pending, &bucket); err != nil {
			return nil, err
		}
		if users == nil || !t.Equal(at) {
			flush()
			at, users, updated = t, nil, rowUpdated
		}
		if rowUpdated.After(updated) {
			updated = rowUpdated
		}
		var err error
		if pending {
			err = db.mergePending(ctx, &users, level, tenant, eventType, bucket)
		} else {
			err = mergeInto(&users, stored)
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", t.UTC().Format(time.RFC3339), err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	flush()
	return points, nil
}

// mergePending merges into *dst the users of a pending coarse row: those of
// its finer rows, read now. A day whose hours are pending too is read from
// its minutes.
func (db *DB) mergePending(ctx context.Context, dst **hyperloglog.Sketch, level rollupLevel, tenant tenancy.ID,
	eventType string, bucket time.Time) error {
	from := coarseHours
	if level.step > time.Hour {
		from = coarseDays
	}
	keys := coarseKeys{tenants: []string{string(tenant)}, types: []string{eventType}, buckets: []time.Time{bucket}}
	sketches, complete, err := finerSketches(ctx, db.pool, from, keys)
	if err == nil && !complete[0] {
		// Minutes are never pending, so this read is complete.
		sketches, _, err = finerSketches(ctx, db.pool, coarseDaysFromMinutes, keys)
	}
	if err != nil || sketches[0] == nil {
		return err
	}
	return mergeSketch(dst, sketches[0])
}
