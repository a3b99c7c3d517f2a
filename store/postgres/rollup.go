package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Event is one accepted event as the rollup consumer read it from Kafka.
type Event struct {
	// Tenant owns the event. Required.
	Tenant tenancy.ID
	// EventID is the client-chosen dedup key, unique per tenant. Required.
	EventID string
	// Type is the event type that rollups group by. Required.
	Type string
	// UserID and SessionID are optional.
	UserID, SessionID string
	// Time is the event time; it picks the rollup minute (UTC). Required.
	Time time.Time
	// ReceivedAt is when ingest accepted the event. Required.
	ReceivedAt time.Time
	// Properties are string dimensions, stored as a JSON object.
	Properties map[string]string
	// Value is the optional number aggregated by SUM/AVG/MIN/MAX.
	Value *float64
}

// Validate reports why PostgreSQL would refuse e, or nil. [DB.ApplyBatch]
// refuses a whole batch for one invalid event, so a consumer should
// Validate events as it reads them and set bad ones aside (ingest should have
// rejected them already): required fields missing, text that is not valid
// UTF-8 or contains NUL (PostgreSQL text and jsonb cannot hold U+0000), a
// time outside years 1-9999, or a value that is NaN or infinite (it would
// poison every sum it joins).
func (e Event) Validate() error {
	var problems []string
	if e.Tenant == "" {
		problems = append(problems, "tenant is required")
	}
	if e.EventID == "" {
		problems = append(problems, "event ID is required")
	}
	if e.Type == "" {
		problems = append(problems, "type is required")
	}
	for _, f := range [...]struct{ name, v string }{
		{"tenant", string(e.Tenant)}, {"event ID", e.EventID}, {"type", e.Type},
		{"user ID", e.UserID}, {"session ID", e.SessionID},
	} {
		if !validText(f.v) {
			problems = append(problems, f.name+" is not valid UTF-8 without NUL")
		}
	}
	for k, v := range e.Properties {
		if !validText(k) || !validText(v) {
			problems = append(problems, "a property is not valid UTF-8 without NUL")
			break
		}
	}
	if !validTime(e.Time) {
		problems = append(problems, "time is zero or outside years 1-9999")
	}
	if !validTime(e.ReceivedAt) {
		problems = append(problems, "received-at time is zero or outside years 1-9999")
	}
	if e.Value != nil && (math.IsNaN(*e.Value) || math.IsInf(*e.Value, 0)) {
		problems = append(problems, "value is not a finite number")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidArgument, strings.Join(problems, "; "))
}

func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

func validTime(t time.Time) bool {
	y := t.UTC().Year()
	return !t.IsZero() && y >= 1 && y <= 9999
}

// PartitionOffset is the next offset to consume from one Kafka partition.
type PartitionOffset struct {
	// Topic is the Kafka topic.
	Topic string
	// Partition is the partition number within Topic.
	Partition int32
	// NextOffset is the offset of the first record not yet applied.
	NextOffset int64
}

// Batch is what the rollup consumer applies in one transaction: the events
// it polled and the offsets that follow them.
type Batch struct {
	// Group is the Kafka consumer group. Required when Offsets is not empty.
	Group string
	// Generation is the consumer group generation the consumer holds its
	// partitions in; a stored higher generation fences the batch.
	Generation int32
	// Offsets are the positions after this batch, one per partition (if a
	// partition appears twice, the highest NextOffset is stored).
	Offsets []PartitionOffset
	// Events may be empty (offsets are still stored), may span tenants and
	// may repeat an event ID (it counts once).
	Events []Event
}

// ChangedBucket names a rollup minute that this batch added to.
type ChangedBucket struct {
	// Tenant owns the rollup.
	Tenant tenancy.ID
	// Type is the event type.
	Type string
	// Bucket is the start of the UTC minute.
	Bucket time.Time
}

// Applied reports what [DB.ApplyBatch] committed.
type Applied struct {
	// Inserted counts events new to the store; only they were rolled up.
	Inserted int
	// Duplicates counts the rest: events stored by an earlier batch and
	// repeats within this batch. Inserted+Duplicates == len(Batch.Events).
	Duplicates int
	// Buckets lists the rollup minutes that changed, ordered by tenant, type
	// and bucket, for cache invalidation and live watchers; nil if none did.
	Buckets []ChangedBucket
}

// Named rollup-write queries, run by ApplyBatch in one transaction in this
// order. Each statement handles its rows in key order, so concurrent batches
// (two partitions carrying the same tenant, or a rebalance overlap) take row
// locks in the same order and wait for each other instead of deadlocking.
const (
	// sqlUpsertOffsets stores the batch's offsets, fenced: the DO UPDATE's
	// WHERE leaves a row of a newer generation untouched, and then it is
	// missing from RETURNING. It runs first so a fenced consumer queues
	// behind its successor's row lock and then sees the newer generation.
	sqlUpsertOffsets = `
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, generation, updated_at)
SELECT $1, t.topic, t.partition, t.next_offset, $2, now()
FROM unnest($3::text[], $4::integer[], $5::bigint[]) AS t (topic, partition, next_offset)
ORDER BY t.topic, t.partition
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset,
    generation  = EXCLUDED.generation,
    updated_at  = EXCLUDED.updated_at
WHERE o.generation <= EXCLUDED.generation
RETURNING o.topic, o.partition`

	// sqlInsertEvents is the exactly-once step of the plain layout, where
	// events' primary key is the dedup key. The arrays hold whole events,
	// their distinct (tenant_id, event_id) keys sorted bytewise (the
	// columns' "C" order); it inserts those not stored yet and returns only
	// their keys. A key that a concurrent transaction inserted first makes
	// ON CONFLICT wait for that transaction and then skip or claim it by its
	// outcome. Properties arrive as JSON text.
	sqlInsertEvents = `
INSERT INTO events (tenant_id, event_id, event_type, user_id, session_id, event_time, received_at,
                    properties, value)
SELECT t.tenant_id, t.event_id, t.event_type, t.user_id, t.session_id, t.event_time, t.received_at,
       t.properties::jsonb, t.value
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::timestamptz[], $8::text[], $9::double precision[]) WITH ORDINALITY
     AS t (tenant_id, event_id, event_type, user_id, session_id, event_time, received_at,
           properties, value, ord)
ORDER BY t.ord
ON CONFLICT (tenant_id, event_id) DO NOTHING
RETURNING tenant_id, event_id`

	// sqlClaimEvents is sqlInsertEvents for the TimescaleDB layout, where
	// the keys live in event_dedup: it claims the keys alone.
	sqlClaimEvents = `
INSERT INTO event_dedup (tenant_id, event_id, event_time)
SELECT t.tenant_id, t.event_id, t.event_time
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
     AS t (tenant_id, event_id, event_time, ord)
ORDER BY t.ord
ON CONFLICT (tenant_id, event_id) DO NOTHING
RETURNING tenant_id, event_id`

	// sqlUpdateSketchesHead + table + sqlUpdateSketchesTail writes merged
	// sketches back to rows the same transaction's upsert has locked.
	sqlUpdateSketchesHead = `
UPDATE `
	sqlUpdateSketchesTail = ` AS r
SET users_hll = t.users_hll
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bytea[])
     AS t (tenant_id, event_type, bucket, users_hll)
WHERE r.tenant_id = t.tenant_id AND r.event_type = t.event_type AND r.bucket = t.bucket`

	// sqlClaimPartitions makes a consumer generation the owner of
	// partitions and returns their stored positions in one statement. A new
	// row starts at 0; an existing one keeps its offset and takes the
	// generation unless a newer one holds it, and then it is missing from
	// RETURNING. A batch of the previous owner that holds a row's lock makes
	// the claim wait for it and then return the offset that batch stored;
	// once the claim commits, every later batch of that owner is fenced.
	sqlClaimPartitions = `
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, generation, updated_at)
SELECT $1, $2, p.partition, 0, $3, now()
FROM unnest($4::integer[]) AS p (partition)
ORDER BY p.partition
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET generation = EXCLUDED.generation,
    updated_at = EXCLUDED.updated_at
WHERE o.generation <= EXCLUDED.generation
RETURNING o.partition, o.next_offset`

	// sqlAdvanceWatermarks raises the watermarks of partitions the
	// generation still owns; a watermark never moves back.
	sqlAdvanceWatermarks = `
UPDATE consumer_offsets AS o
SET watermark = greatest(o.watermark, t.watermark)
FROM unnest($4::integer[], $5::timestamptz[]) AS t (partition, watermark)
WHERE o.group_id = $1 AND o.topic = $2 AND o.generation = $3 AND o.partition = t.partition`

	// sqlWatermark is the watermark of a topic: the earliest of its
	// partitions', NULL while any has none.
	sqlWatermark = `
SELECT CASE WHEN bool_and(watermark IS NOT NULL) THEN min(watermark) END
FROM consumer_offsets
WHERE group_id = $1 AND topic = $2`

	sqlLoadOffsets = `
SELECT partition, next_offset
FROM consumer_offsets
WHERE group_id = $1 AND topic = $2`
)

// upsertRollupsSQL adds a batch's aggregates to table, locking every row it
// touches until COMMIT. The rows arrive sorted by key. least/greatest ignore
// NULLs, so a bucket's first value sets min/max. The last column differs by
// level:
//
//   - rollups_1m: users_hll. A new row takes the batch's sketch; an existing
//     one keeps its own (or takes the batch's if it had none), and the
//     statement returns each row's sketch as it is now, which ApplyBatch
//     merges with the batch's and writes back with sqlUpdateSketches under
//     the lock taken here, so a concurrent batch touching the same row waits
//     and then merges into the result.
//   - rollups_1h, rollups_1d: users_pending, set when the batch added users
//     to the bucket; DB.MergeCoarseSketches rebuilds their sketches later.
func upsertRollupsSQL(table string, coarse bool) string {
	last, lastType, set, returning := "users_hll", "bytea", "coalesce(r.users_hll, EXCLUDED.users_hll)",
		"\nRETURNING r.tenant_id, r.event_type, r.bucket, r.users_hll"
	if coarse {
		last, lastType, set, returning = "users_pending", "boolean", "r.users_pending OR EXCLUDED.users_pending", ""
	}
	return fmt.Sprintf(`
INSERT INTO %[1]s AS r (tenant_id, event_type, bucket, event_count, value_sum, value_count,
                       value_min, value_max, %[2]s, updated_at)
SELECT t.tenant_id, t.event_type, t.bucket, t.event_count, t.value_sum, t.value_count,
       t.value_min, t.value_max, t.%[2]s, now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::double precision[],
            $6::bigint[], $7::double precision[], $8::double precision[], $9::%[3]s[]) WITH ORDINALITY
     AS t (tenant_id, event_type, bucket, event_count, value_sum, value_count,
           value_min, value_max, %[2]s, ord)
ORDER BY t.ord
ON CONFLICT (tenant_id, event_type, bucket) DO UPDATE
SET event_count = r.event_count + EXCLUDED.event_count,
    value_sum   = r.value_sum + EXCLUDED.value_sum,
    value_count = r.value_count + EXCLUDED.value_count,
    value_min   = least(r.value_min, EXCLUDED.value_min),
    value_max   = greatest(r.value_max, EXCLUDED.value_max),
    %[2]s = %[4]s,
    updated_at  = EXCLUDED.updated_at%[5]s`, table, last, lastType, set, returning)
}

// maxDeadlockRetries bounds how often ApplyBatch runs a transaction again
// after PostgreSQL aborted it to break a deadlock. Each retry claims its keys
// in the deadlock-free form, so it can only deadlock again with yet another
// concurrent batch that does not.
const maxDeadlockRetries = 3

// rollupLevel is one rollup table: its bucket width and its statements.
type rollupLevel struct {
	table string
	step  time.Duration
	// coarse levels (hours, days) get their sketches from
	// DB.MergeCoarseSketches; ApplyBatch only marks them users_pending.
	coarse    bool
	sqlUpsert string
	// sqlSketch writes merged sketches back (the minute level only).
	sqlSketch string
}

// The rollup tables, finest first. ApplyBatch writes them in this order, so
// concurrent batches lock their rows in one global order: table, then key.
const (
	level1m = iota
	level1h
	level1d
	numLevels
)

// rollupLevels returns the rollup tables indexed by level1m, level1h, level1d.
func rollupLevels() [numLevels]rollupLevel {
	return levelTable
}

// levelTable is what rollupLevels returns, its statements built once.
var levelTable = [numLevels]rollupLevel{
	level1m: {
		table: "rollups_1m", step: time.Minute,
		sqlUpsert: upsertRollupsSQL("rollups_1m", false),
		sqlSketch: sqlUpdateSketchesHead + "rollups_1m" + sqlUpdateSketchesTail,
	},
	level1h: {
		table: "rollups_1h", step: time.Hour, coarse: true,
		sqlUpsert: upsertRollupsSQL("rollups_1h", true),
	},
	level1d: {
		table: "rollups_1d", step: 24 * time.Hour, coarse: true,
		sqlUpsert: upsertRollupsSQL("rollups_1d", true),
	},
}

// ApplyBatch commits b exactly once, in one transaction: it claims each
// event's (tenant, event ID) in its unique index (events' primary key on
// plain PostgreSQL, event_dedup on TimescaleDB), stores and rolls up only the
// events whose key it claimed, and stores b's offsets — unless a stored
// offset row has a higher generation than b.Generation, in which case it
// rolls everything back and returns ErrFenced. Replaying a committed batch
// therefore changes nothing but the offsets (and updated_at).
//
// The claimed events are stored in events and added to rollups_1m,
// rollups_1h and rollups_1d: count and value sum/count/min/max. Their user
// IDs go into the minute rows' unique-user sketches, merged under the row's
// lock; the hour and day rows they fall in are marked users_pending, and
// [DB.MergeCoarseSketches] rebuilds their sketches later.
//
// Cost: a fixed number of round trips whatever the batch size (BEGIN; the
// offsets and the claims of recently seen keys, pipelined; the other claims
// by COPY in a savepoint, which on plain PostgreSQL store the events too; on
// TimescaleDB the events by COPY; the three rollup upserts, pipelined; the
// sketch write-backs, pipelined; COMMIT). The rollups are aggregated in Go
// while PostgreSQL ingests the claims. BenchmarkApplyBatch measures it
// against bare COPYs of the same rows.
func (db *DB) ApplyBatch(ctx context.Context, b Batch) (Applied, error) {
	op := fmt.Sprintf("postgres: apply batch (group %q, generation %d)", b.Group, b.Generation)
	if len(b.Offsets) > 0 && b.Group == "" {
		return Applied{}, invalidf(op, "group is required to store offsets")
	}
	// Validating and sorting the keys both read every event: one per core.
	invalid := make(chan error, 1)
	go func() {
		for i := range b.Events {
			if err := b.Events[i].Validate(); err != nil {
				invalid <- fmt.Errorf("%s: event %d: %w", op, i, err)
				return
			}
		}
		invalid <- nil
	}()
	keys := distinctKeysOf(b.Events)
	offsets := offsetColumnsOf(b.Offsets)
	if err := <-invalid; err != nil {
		return Applied{}, err
	}

	applied, err := db.apply(ctx, b, keys, offsets, false)
	for retry := 0; retry < maxDeadlockRetries && isDeadlock(err); retry++ {
		// Only the claims can deadlock (see claims.go), and only with a
		// concurrent batch of overlapping keys; claiming every key in one
		// sorted statement avoids that.
		applied, err = db.apply(ctx, b, keys, offsets, true)
	}
	if err != nil {
		// ErrFenced passes through wrapErr unchanged.
		return Applied{}, wrapErr(op, err)
	}
	db.remember(keys)
	return applied, nil
}

// apply runs ApplyBatch's transaction. doubtAll claims every key with ON
// CONFLICT, as if each had been applied before.
func (db *DB) apply(ctx context.Context, b Batch, keys distinctKeys, offsets offsetColumns, doubtAll bool) (Applied, error) {
	layout := claimLayout{keysInEvents: !db.Timescale()}
	applied := Applied{Duplicates: len(b.Events)}
	err := db.commitOnce(ctx, func(tx pgx.Tx) error {
		// The rollups need only the claimed events: they are added up on
		// this core while PostgreSQL stores the claims (and, on the
		// TimescaleDB layout, then the events) on the other.
		var (
			rollups [numLevels]levelRollups
			aggErr  error
		)
		add := func(claimed []int32) { rollups, aggErr = aggregate(b.Events, claimed) }
		claimed, aggregated, err := db.claimEvents(ctx, tx, b, offsets, keys, doubtAll, layout, add)
		if err != nil || len(claimed) == 0 {
			return err
		}
		if !layout.keysInEvents {
			if err := copyEvents(ctx, tx, b.Events, claimed); err != nil {
				return err
			}
		}
		if !aggregated {
			add(claimed)
		}
		if aggErr != nil {
			return aggErr
		}
		if err := writeRollups(ctx, tx, &rollups); err != nil {
			return err
		}
		applied = rollups[level1m].applied(len(claimed), len(b.Events))
		return nil
	})
	return applied, err
}

// commitTimeout bounds waiting for COMMIT once it is sent.
const commitTimeout = 30 * time.Second

// commitOnce runs fn in a transaction, like pgx.BeginFunc, except that once
// fn has succeeded the COMMIT is not given up when ctx ends: a COMMIT
// interrupted by cancellation may have committed or not, and a caller that
// stops (a consumer shutting down or leaving its group) must know which, or
// it would report a committed batch as abandoned. The wait is bounded by
// commitTimeout instead.
func (db *DB) commitOnce(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// After a successful COMMIT this does nothing.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	return tx.Commit(cctx)
}

// LoadOffsets returns the stored next offset per partition of topic for the
// consumer group; partitions never committed are absent.
func (db *DB) LoadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	op := fmt.Sprintf("postgres: load offsets (group %q, topic %q)", group, topic)
	rows, err := db.pool.Query(ctx, sqlLoadOffsets, group, topic)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	out := make(map[int32]int64)
	var (
		partition int32
		next      int64
	)
	_, err = pgx.ForEachRow(rows, []any{&partition, &next}, func() error {
		out[partition] = next
		return nil
	})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// ClaimPartitions makes generation of the consumer group the owner of
// topic's partitions and returns the next offset stored for each: where its
// consumer resumes. A partition never applied is stored, and returned, as 0,
// which a consumer reads as "the start of the partition" (Kafka answers an
// offset below the log start as out of range).
//
// Loading the offsets and claiming the partitions is one statement, so no
// batch of an earlier owner can commit between them: one that is committing
// makes the claim wait and its offsets are the ones returned, and every later
// one is refused with ErrFenced. If a newer generation already owns any of
// the partitions, nothing changes and ClaimPartitions returns ErrFenced
// naming them.
func (db *DB) ClaimPartitions(ctx context.Context, group, topic string, generation int32, partitions []int32) (map[int32]int64, error) {
	op := fmt.Sprintf("postgres: claim partitions (group %q, topic %q, generation %d)", group, topic, generation)
	if group == "" || topic == "" {
		return nil, invalidf(op, "group and topic are required")
	}
	sorted := slices.Clone(partitions)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	out := make(map[int32]int64, len(sorted))
	err := db.commitOnce(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sqlClaimPartitions, group, topic, generation, sorted)
		if err != nil {
			return err
		}
		var (
			partition int32
			next      int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&partition, &next}, func() error {
			out[partition] = next
			return nil
		}); err != nil {
			return err
		}
		if len(out) == len(sorted) {
			return nil
		}
		var fenced []string
		for _, p := range sorted {
			if _, ok := out[p]; !ok {
				fenced = append(fenced, fmt.Sprintf("%s/%d", topic, p))
			}
		}
		// Rolling back leaves the partitions that were claimed as they were.
		return fmt.Errorf("%w: partitions %s", ErrFenced, strings.Join(fenced, ", "))
	})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// AdvanceWatermarks records, for partitions of topic that generation of the
// consumer group still owns, that every event accepted into the partition
// before the given time has been applied. A partition owned by another
// generation, or whose watermark is later already, is left as it is.
func (db *DB) AdvanceWatermarks(ctx context.Context, group, topic string, generation int32, watermarks map[int32]time.Time) error {
	if len(watermarks) == 0 {
		return nil
	}
	partitions := make([]int32, 0, len(watermarks))
	times := make([]time.Time, 0, len(watermarks))
	for p, t := range watermarks {
		partitions = append(partitions, p)
		times = append(times, t)
	}
	if _, err := db.pool.Exec(ctx, sqlAdvanceWatermarks, group, topic, generation, partitions, times); err != nil {
		return wrapErr(fmt.Sprintf("postgres: advance watermarks (group %q, topic %q)", group, topic), err)
	}
	return nil
}

// Watermark returns a time before which every event accepted into topic has
// been applied to the rollups by the consumer group: the earliest watermark
// of the topic's partitions. It returns the zero time while that is unknown
// (no partition stored yet, or one without a watermark).
func (db *DB) Watermark(ctx context.Context, group, topic string) (time.Time, error) {
	var w *time.Time
	if err := db.pool.QueryRow(ctx, sqlWatermark, group, topic).Scan(&w); err != nil {
		return time.Time{}, wrapErr(fmt.Sprintf("postgres: watermark (group %q, topic %q)", group, topic), err)
	}
	if w == nil {
		return time.Time{}, nil
	}
	return w.UTC(), nil
}

// offsetColumns are a batch's offsets as parallel arrays, one entry per
// partition, sorted by (topic, partition).
type offsetColumns struct {
	topics     []string
	partitions []int32
	next       []int64
}

func offsetColumnsOf(offsets []PartitionOffset) offsetColumns {
	sorted := slices.Clone(offsets)
	slices.SortFunc(sorted, func(a, b PartitionOffset) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	var c offsetColumns
	for i, o := range sorted {
		// ON CONFLICT cannot touch a row twice in one statement; keep the
		// highest offset of a repeated partition.
		if i > 0 && o.Topic == sorted[i-1].Topic && o.Partition == sorted[i-1].Partition {
			c.next[len(c.next)-1] = max(c.next[len(c.next)-1], o.NextOffset)
			continue
		}
		c.topics = append(c.topics, o.Topic)
		c.partitions = append(c.partitions, o.Partition)
		c.next = append(c.next, o.NextOffset)
	}
	return c
}

// checkOffsets reads sqlUpsertOffsets' RETURNING rows and returns ErrFenced,
// naming the fenced partitions, unless every partition was written.
func checkOffsets(rows pgx.Rows, c offsetColumns) error {
	type tp struct {
		topic     string
		partition int32
	}
	written := make(map[tp]bool, len(c.topics))
	var (
		topic     string
		partition int32
	)
	if _, err := pgx.ForEachRow(rows, []any{&topic, &partition}, func() error {
		written[tp{topic, partition}] = true
		return nil
	}); err != nil {
		return fmt.Errorf("upsert offsets: %w", err)
	}
	if len(written) == len(c.topics) {
		return nil
	}
	var fenced []string
	for i := range c.topics {
		if !written[tp{c.topics[i], c.partitions[i]}] {
			fenced = append(fenced, fmt.Sprintf("%s/%d", c.topics[i], c.partitions[i]))
		}
	}
	return fmt.Errorf("%w: partitions %s", ErrFenced, strings.Join(fenced, ", "))
}
