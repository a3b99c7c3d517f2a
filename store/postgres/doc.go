// Package postgres is Abacus's PostgreSQL store: the connection pool, the
// embedded schema migrations, TimescaleDB detection and the named queries
// that every service uses. It never imports a service package.
//
// # Using it
//
//	db, err := postgres.Open(ctx, postgres.Config{URL: url}, logger)
//	...
//	defer db.Close()
//	if err := postgres.Migrate(ctx, db); err != nil { ... } // `abacusd migrate`, and dev mode
//
// [Open] connects and pings within ctx and starts nothing else. Errors are the
// sentinels of errors.go ([ErrNotFound], [ErrAlreadyExists], [ErrFenced],
// [ErrFailedPrecondition], [ErrInvalidArgument]) wrapped with the operation;
// test them with errors.Is.
//
// # Schema
//
// The numbered files in migrations/ are embedded in the binary and applied
// in order by [Migrate] (github.com/jackc/tern/v2/migrate), which records the
// version in abacus_schema_version. Tern takes a PostgreSQL advisory lock for
// the run, so any number of processes may call Migrate at once. Each file is
// a text/template; {{ if .Timescale }} chooses hypertables over plain tables.
//
//	tenants           (tenant_id)                    display name, state active|suspended,
//	                                                 limit overrides (jsonb)
//	api_keys          (key_id), index (tenant_id, created_at, key_id)
//	                                                 secret hash, scopes, expiry, revocation,
//	                                                 last use, successor after rotation
//	events            (tenant_id, event_id), index (tenant_id, event_type, event_time)
//	                                                 raw events, one row per event still kept;
//	                                                 the primary key is the dedup key. On
//	                                                 TimescaleDB: no primary key, a hypertable
//	                                                 on event_time, compressed per tenant after
//	                                                 30 days
//	event_dedup       (tenant_id, event_id), index (tenant_id, event_time)
//	                                                 TimescaleDB only: the dedup keys
//	rollups_1m        (tenant_id, event_type, bucket)
//	rollups_1h        (tenant_id, event_type, bucket)
//	rollups_1d        (tenant_id, event_type, bucket)
//	                                                 count, value sum/count/min/max and a
//	                                                 unique-user sketch per UTC minute, hour
//	                                                 and day; hypertables on bucket
//	consumer_offsets  (group_id, topic, partition)   next offset and consumer generation
//
// # Limits and keys
//
// A tenant's limit overrides are stored as the JSON of
// [tenancy.LimitOverrides] (only overridden limits present, '{}' for none) and
// served to every node by [DB.LoadLimitOverrides]. The store does not judge
// them; the admin service validates the effective limits before writing, and
// changes some overrides while keeping others with [DB.UpdateTenantFunc],
// whose read-modify-write holds the tenant's row lock, so two concurrent
// changes of different limits both survive.
//
// [DB.RotateAPIKey] locks the old key's row, creates its successor and sets the
// old key's expiry to the end of the grace period in one transaction; a key is
// rotated at most once (api_keys.replaced_by). [DB.TouchAPIKeys] records the
// last use of many keys in one statement and never moves a time backwards.
//
// Every table holding tenant data leads its keys with tenant_id, and every
// query on tenant data filters on it. The exceptions are the two queries of
// the authentication path, keyed by the globally unique key ID:
// [DB.LookupAPIKey], which finds the tenant, and [DB.TouchAPIKeys], which
// records the use of keys that just authenticated.
// Identifier columns use the "C" collation (bytewise compare and sort).
//
// # Exactly once: the dedup and offset transaction
//
// The rollup consumer hands each polled batch to [DB.ApplyBatch], which runs
// one READ COMMITTED transaction:
//
//  1. Upsert the batch's offsets into consumer_offsets, fenced: the DO UPDATE
//     applies only where the stored generation is not higher than the
//     batch's. If any partition was refused, the consumer lost it in a
//     rebalance and its successor has committed; ApplyBatch rolls back and
//     returns ErrFenced. Equal generations overwrite (the same consumer's
//     next batch), lower ones are replaced (the consumer took over).
//  2. Claim the batch's distinct (tenant_id, event_id) keys, sorted, keeping
//     the first copy of a key repeated in the batch. On plain PostgreSQL the
//     claim is the raw event's row in events, whose primary key is the dedup
//     key; on TimescaleDB it is a row in event_dedup. Keys this process
//     applied lately go through INSERT ... ON CONFLICT DO NOTHING RETURNING;
//     the rest, almost always new, through a bulk COPY in a savepoint, which,
//     if a key existed after all, is rolled back and redone with ON CONFLICT
//     (claims.go). Either way the unique index decides, and only the claimed
//     events go on. Meanwhile Go adds up the events the COPY is claiming per
//     minute, hour and day: count, value sum/count/min/max, and a
//     HyperLogLog sketch of their user IDs (sketch.go).
//  3. On TimescaleDB, COPY the claimed events into events.
//  4. Upsert those aggregates into rollups_1m, rollups_1h and rollups_1d,
//     which locks the touched rows until COMMIT. The minute upsert returns
//     the stored sketches; the batch's sketch is merged into each in Go and
//     the ones that changed are written back. PostgreSQL cannot merge
//     sketches, and the row lock taken by the upsert is what keeps two
//     consumers touching the same minute from losing either's users. The
//     hour and day rows are only marked users_pending: rewriting their
//     large sketches in every batch cost more than the rest of the batch.
//     [DB.MergeCoarseSketches], which the rollup consumers run every
//     second, rebuilds them from the finer rows (coarse.go), and a query of
//     a pending row merges the finer sketches itself.
//
// Then COMMIT. Raw events, dedup keys, rollups and offsets become visible
// together or not at all, so a crash at any point either replays the batch
// (and dedup turns the replay into a no-op) or finds it committed (and
// resumes from the stored offsets). A concurrent transaction inserting the
// same key makes the claim wait for it and then skip or insert according to
// its outcome, so two consumers racing over the same events still count each
// once. Rollup rows are locked in key order, table by table, so concurrent
// batches queue instead of deadlocking; claims.go explains the one deadlock
// the claims allow and how ApplyBatch recovers from it.
//
// The statements take arrays or COPY streams, so a batch costs the same few
// round trips whatever its size.
//
// # Queries
//
// [DB.TimeSeries] answers a metric (count, sum, avg, min, max, unique users)
// per minute, hour or day from the coarsest rollup table whose buckets tile
// the requested range: whole days read rollups_1d, whole hours rollups_1h,
// anything else rollups_1m. Unique users are the estimate of the merged
// sketches of each bucket, with a relative standard error of
// [UniqueUsersRelativeError]; every other metric is exact.
//
// # Retention
//
// [DB.EnforceRetention] deletes what each tenant's retention limits let go
// (tenancy.Limits.RawRetention and RollupRetention): raw events whose event
// time is before now-Raw, with their dedup keys, and rollup rows whose whole
// bucket ended at or before now-Rollup (a bucket b of width w goes when
// b+w <= cutoff; buckets are aligned, so b < the cutoff truncated to w). An
// hour or day bucket thus outlives the minutes it sums until it has ended,
// and rollups never change when raw events go.
//
// Every statement names the tenant, and each is its own short transaction:
//
//   - On plain tables, the tenant's event types are enumerated with a loose
//     index scan (one descent of the (tenant_id, event_type, ...) index per
//     type), and each type's expired rows are deleted oldest first, at most
//     10,000 per statement: an index range scan picks their ctids, a TID scan
//     deletes them. A condition on the time alone cannot use those indexes.
//   - On TimescaleDB, chunks whose whole range is past the longest retention
//     of any tenant are dropped first (drop_chunks), which is where most
//     expired data goes. The rest is deleted per tenant with plain
//     comparisons on tenant_id and the time column, an hour of events (or a
//     day to a year of rollups) per statement from the tenant's oldest
//     expired row: raw events are compressed (migration 007: segmentby
//     tenant_id, orderby event_time, chunks older than 30 days), and
//     TimescaleDB applies exactly such conditions to compressed batches,
//     while subqueries in a DELETE on compressed chunks are not safe.
//   - Where event_dedup exists (it holds the dedup keys when they are not
//     part of events, as on TimescaleDB), keys whose event time is before
//     the raw cutoff go after the events, 10,000 per statement through
//     event_dedup_tenant_time_idx; a key never goes before its event.
//
// Deleting a dedup key makes the event new again. Retention relies on the
// tenancy rules for that: raw retention is at least the timestamp past window
// plus a day, so no client retry of a deleted event can still be accepted,
// and the Kafka topic must not keep records longer than raw retention minus
// the past window, or a replay of an old record would count again.
//
// [DB.TryAdvisoryLock] lets one process of a deployment run retention at a
// time: the lock is a session-level advisory lock on a connection of its own.
//
// # TimescaleDB detection
//
// TimescaleDB cannot be installed from this project's package sources, so it
// is optional and detected at run time ([DB.Timescale]):
//
//   - A database that already holds the schema keeps its layout: Timescale is
//     true exactly when events is a hypertable. Installing TimescaleDB later
//     does not switch an existing plain schema (that would need a data
//     migration), so later migrations can trust the flag.
//   - A fresh database uses TimescaleDB when timescaledb is listed in
//     pg_available_extensions and is either created in the database already
//     or preloaded (TimescaleDB refuses CREATE EXTENSION otherwise), unless
//     Config.DisableTimescale is set. Migration 001 then creates the extension
//     and turns events and rollups_1m into hypertables (by_range, so
//     TimescaleDB 2.13 or newer).
//
// Queries are the same SQL on both layouts (date_trunc with an explicit UTC
// zone rather than time_bucket), so results are identical by construction.
package postgres
