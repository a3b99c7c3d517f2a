package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Granularities accepted by [DB.TimeSeriesCount]. They double as
// PostgreSQL date_trunc field names, which is why only these are accepted.
const (
	GranularityMinute = "minute"
	GranularityHour   = "hour"
	GranularityDay    = "day"
)

// Point is one non-empty bucket of a time series.
type Point struct {
	// Time is the start of the bucket, in UTC.
	Time time.Time
	// Value is the bucket's aggregate.
	Value float64
}

// sqlTimeSeriesCount sums event counts per UTC bucket. $5 is a date_trunc
// field from the granularity whitelist, bound as a parameter, never spliced
// into the SQL. The range filter is on the 1-minute rollup buckets, so it
// runs on the primary key (tenant_id, event_type, bucket).
const sqlTimeSeriesCount = `
SELECT date_trunc($5::text, bucket, 'UTC') AS t, sum(event_count)::double precision
FROM rollups_1m
WHERE tenant_id = $1
  AND event_type = $2
  AND bucket >= $3
  AND bucket < $4
GROUP BY 1
ORDER BY 1`

// TimeSeriesCount returns the number of events of eventType for tenant per
// UTC minute, hour or day (granularity is one of the Granularity constants),
// over rollup minutes in [start, end). Only non-empty buckets are returned,
// in time order; the caller fills gaps. Because the range applies to whole
// rollup minutes, an unaligned start or end makes the first or last bucket
// partial: callers wanting whole buckets align start and end to the
// granularity. It returns ErrInvalidArgument for an unknown granularity or
// end before start.
func (db *DB) TimeSeriesCount(ctx context.Context, tenant tenancy.ID, eventType string,
	start, end time.Time, granularity string) ([]Point, error) {
	op := fmt.Sprintf("postgres: time series count (tenant %q)", tenant)
	switch granularity {
	case GranularityMinute, GranularityHour, GranularityDay:
	default:
		return nil, invalidf(op, "granularity %q, want %q, %q or %q",
			granularity, GranularityMinute, GranularityHour, GranularityDay)
	}
	if end.Before(start) {
		return nil, invalidf(op, "end %s is before start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	rows, err := db.pool.Query(ctx, sqlTimeSeriesCount, string(tenant), eventType, start, end, granularity)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	defer rows.Close()
	var points []Point
	for rows.Next() {
		var p Point
		if err := rows.Scan(&p.Time, &p.Value); err != nil {
			return nil, wrapErr(op, err)
		}
		p.Time = p.Time.UTC()
		points = append(points, p)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(op, err)
	}
	return points, nil
}
