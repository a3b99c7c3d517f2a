// Package query implements abacus.query.v1.QueryService: time series of a
// tenant's rollups, as one response (GetTimeSeries) or as a live stream of
// changes (WatchTimeSeries).
//
// # Tenant
//
// Each handler's first line reads the authenticated tenant with
// tenancy.FromContext; from then on the tenant travels as an explicit
// tenancy.ID. Requests never name a tenant. A missing tenant is
// tenancy.ErrNoTenant, returned wrapped for the server's error mapper: it
// means the handler was reached without the auth interceptor.
//
// # Metrics
//
// METRIC_COUNT, SUM, AVG, MIN and MAX are exact; METRIC_UNIQUE_USERS is a
// HyperLogLog estimate, and its responses state the estimate's relative
// standard error (postgres.UniqueUsersRelativeError). The service always
// reads whole buckets of the requested granularity (see Ranges), which lets
// the store answer day and hour series from its daily and hourly rollups, one
// row per point, instead of summing minutes.
//
// # Ranges
//
// Buckets are aligned in UTC: start is rounded down and end rounded up to the
// granularity, and the response states the range it used. Every bucket of the
// range has a point, zero when no event fell into it. A range longer than
// Config.MaxRange, or with more than Config.MaxPoints buckets, is refused with
// INVALID_ARGUMENT and an errdetails.BadRequest naming the field and the
// limit, so one request cannot make the server materialise an unbounded
// series.
//
// # Watching
//
// WatchTimeSeries sends the whole series first (snapshot), then re-reads the
// range whenever it is told the data may have changed and sends only the
// points that are new or changed. Without an end the range follows the clock:
// its end is the current time rounded up, so a new bucket appears as a new
// point when its time comes. A message without points is a heartbeat, sent
// when nothing else was sent for Config.WatchHeartbeat, so that clients and
// proxies can tell a quiet series from a dead connection. A watch that
// follows the clock and outgrows the limits ends with OUT_OF_RANGE; the
// client re-opens it with a later start.
//
// What tells a watch to re-read is one small seam, [Service.changes]: today a
// ticker of Config.WatchPollInterval, later the rollup consumer's
// "bucket changed" notifications from Redis. The watch loop does not know
// which.
package query
