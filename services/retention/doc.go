// Package retention is the job that deletes what every tenant's retention
// limits let go: raw events (with their dedup keys) older than
// tenancy.Limits.RawRetention and rollups whose bucket ended more than
// RollupRetention ago. abacusd runs it in every process of the rollup role,
// every ABACUS_RETENTION_INTERVAL.
//
// # One process at a time
//
// Each round first takes the PostgreSQL advisory lock [LockName] with
// [Store.TryAdvisoryLock]. When another process holds it, that process is
// running a round, and this one skips its turn (counted in
// abacus_retention_skipped_total). So the deletes of a deployment never
// compete with each other, whatever the number of rollup processes. Should
// two rounds overlap anyway (a lock connection lost mid-round), they delete
// the same rows, which is harmless.
//
// # Limits
//
// A round reads every tenant and its stored limit overrides, applies them
// over the configured defaults (Config.Defaults) and checks the result with
// tenancy.Limits.Validate. A tenant whose effective limits are not valid is
// left alone for the round and logged: retention deletes data, so a limit it
// cannot trust is no reason to fall back on the defaults. The store then
// deletes tenant by tenant ([postgres.DB.EnforceRetention]).
//
// # Failures
//
// A round that fails (a database outage, a statement timeout) is logged and
// counted in abacus_retention_failures_total; the rows it deleted before
// failing stay deleted and are counted, and the next round, an interval
// later, carries on. The job never stops on its own before its context ends.
//
// # Metrics
//
// abacus_retention_deleted_rows_total{table} counts rows deleted,
// abacus_retention_dropped_chunks_total{table} TimescaleDB chunks dropped
// whole, and abacus_retention_last_success_timestamp_seconds is when the last
// round of this process finished without error: alert when it falls more than
// a few intervals behind on every process. One log line per round says what
// it deleted.
package retention
