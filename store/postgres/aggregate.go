package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/tenancy"
)

// copyEvents stores the claimed events in events with COPY, the fastest
// bulk path PostgreSQL has.
func copyEvents(ctx context.Context, tx pgx.Tx, events []Event, claimed []int32) error {
	n, err := copyRows(ctx, tx.Conn().PgConn(), sqlCopyEvents, len(claimed), func(buf []byte, j int) []byte {
		return appendEventRow(buf, &events[claimed[j]])
	})
	if err != nil {
		return fmt.Errorf("copy events: %w", err)
	}
	return copyCount("copy events", n, len(claimed))
}

// rollupKey names a rollup row: tenant, event type and bucket start (Unix
// seconds, UTC-aligned).
type rollupKey struct {
	tenant, typ string
	bucket      int64
}

// rollupAgg is what one batch adds to a rollup row.
type rollupAgg struct {
	count, valueCount int64
	sum, min, max     float64
	// users is nil while no event of the bucket had a user ID, and on the
	// coarse levels, which only note hasUsers.
	users    *hyperloglog.Sketch
	hasUsers bool
}

// levelRollups are one rollup table's rows touched by a batch, sorted by key,
// as parallel arrays for sqlUpsertRollups*.
type levelRollups struct {
	keys        []rollupKey
	tenants     []string
	types       []string
	buckets     []time.Time
	counts      []int64
	sums        []float64
	valueCounts []int64
	mins, maxes []*float64
	sketches    []*hyperloglog.Sketch
	// encoded are the sketches as sent; nil where sketches is nil.
	encoded [][]byte
	// pending marks the rows whose bucket got users (coarse levels).
	pending []bool
}

// aggregate adds up the claimed events per rollup row of every level.
func aggregate(events []Event, claimed []int32) ([numLevels]levelRollups, error) {
	levels := rollupLevels()
	// Rows are looked up per (tenant, type) first, then per bucket, so each
	// event hashes its strings once rather than once per level.
	type series struct{ tenant, typ string }
	groups := make(map[series]*[numLevels]map[int64]*rollupAgg)
	var (
		last      series
		lastGroup *[numLevels]map[int64]*rollupAgg
		rows      [numLevels]int
	)
	for _, i := range claimed {
		e := &events[i]
		if s := (series{string(e.Tenant), e.Type}); lastGroup == nil || s != last {
			g := groups[s]
			if g == nil {
				g = new([numLevels]map[int64]*rollupAgg)
				for l := range g {
					g[l] = make(map[int64]*rollupAgg)
				}
				groups[s] = g
			}
			last, lastGroup = s, g
		}
		t := e.Time.UTC()
		var userHash uint64
		if e.UserID != "" {
			userHash = hashUser(e.UserID)
		}
		for l := range levels {
			bucket := t.Truncate(levels[l].step).Unix()
			a := lastGroup[l][bucket]
			if a == nil {
				a = &rollupAgg{}
				lastGroup[l][bucket] = a
				rows[l]++
			}
			a.add(e.Value, e.UserID != "", !levels[l].coarse, userHash)
		}
	}
	var out [numLevels]levelRollups
	for l := range levels {
		aggs := make(map[rollupKey]*rollupAgg, rows[l])
		for s, g := range groups {
			for bucket, a := range g[l] {
				aggs[rollupKey{tenant: s.tenant, typ: s.typ, bucket: bucket}] = a
			}
		}
		r, err := levelRollupsOf(aggs)
		if err != nil {
			return out, fmt.Errorf("aggregate %s: %w", levels[l].table, err)
		}
		out[l] = r
	}
	return out, nil
}

// add adds one event: its value if it has one, and its user if it has one,
// to the sketch if sketch is set.
func (a *rollupAgg) add(value *float64, hasUser, sketch bool, userHash uint64) {
	a.count++
	if value != nil {
		v := *value
		if a.valueCount == 0 {
			a.min, a.max = v, v
		} else {
			a.min, a.max = min(a.min, v), max(a.max, v)
		}
		a.valueCount++
		a.sum += v
	}
	a.hasUsers = a.hasUsers || hasUser
	if hasUser && sketch {
		if a.users == nil {
			a.users = newSketch()
		}
		a.users.InsertHash(userHash)
	}
}

// levelRollupsOf lays out one level's rows sorted by key, with their
// sketches encoded for the upsert.
func levelRollupsOf(aggs map[rollupKey]*rollupAgg) (levelRollups, error) {
	n := len(aggs)
	r := levelRollups{
		keys: make([]rollupKey, 0, n), tenants: make([]string, n), types: make([]string, n),
		buckets: make([]time.Time, n), counts: make([]int64, n), sums: make([]float64, n),
		valueCounts: make([]int64, n), mins: make([]*float64, n), maxes: make([]*float64, n),
		sketches: make([]*hyperloglog.Sketch, n), encoded: make([][]byte, n), pending: make([]bool, n),
	}
	for k := range aggs {
		r.keys = append(r.keys, k)
	}
	slices.SortFunc(r.keys, compareRollupKeys)
	for i, k := range r.keys {
		a := aggs[k]
		r.tenants[i], r.types[i], r.buckets[i] = k.tenant, k.typ, time.Unix(k.bucket, 0).UTC()
		r.counts[i], r.sums[i], r.valueCounts[i] = a.count, a.sum, a.valueCount
		if a.valueCount > 0 {
			r.mins[i], r.maxes[i] = &a.min, &a.max
		}
		r.pending[i] = a.hasUsers
		if a.users != nil {
			enc, err := encodeSketch(a.users)
			if err != nil {
				return levelRollups{}, err
			}
			r.sketches[i], r.encoded[i] = a.users, enc
		}
	}
	return r, nil
}

// compareRollupKeys orders rollup rows as their primary key does.
func compareRollupKeys(a, b rollupKey) int {
	if c := strings.Compare(a.tenant, b.tenant); c != 0 {
		return c
	}
	if c := strings.Compare(a.typ, b.typ); c != 0 {
		return c
	}
	return cmp.Compare(a.bucket, b.bucket)
}

// sketchMerge is a stored sketch that the batch's sketch of the same row
// must be merged into: rollups[level] row i, and the merged result.
type sketchMerge struct {
	level, i int
	stored   []byte
	merged   []byte
}

// writeRollups upserts every level's rows (one pipelined round trip), merges
// the batch's minute sketches into the stored ones the upsert returned, and
// writes back those that changed (another round trip). The rows stay locked
// from their upsert to COMMIT, so no other batch can change a sketch between
// its read and its write-back. The hour and day upserts only mark their rows
// users_pending (see coarse.go).
func writeRollups(ctx context.Context, tx pgx.Tx, rollups *[numLevels]levelRollups) error {
	levels := rollupLevels()
	var batch pgx.Batch
	for l := range levels {
		r := &rollups[l]
		last := any(r.encoded)
		if levels[l].coarse {
			last = r.pending
		}
		batch.Queue(levels[l].sqlUpsert, r.tenants, r.types, r.buckets, r.counts, r.sums,
			r.valueCounts, r.mins, r.maxes, last)
	}
	var merges []sketchMerge
	err := func() error {
		br := tx.SendBatch(ctx, &batch)
		defer br.Close()
		for l := range levels {
			var err error
			if levels[l].coarse {
				_, err = br.Exec()
			} else {
				merges, err = readUpserted(br, l, &rollups[l], merges)
			}
			if err != nil {
				return fmt.Errorf("upsert %s: %w", levels[l].table, err)
			}
		}
		return br.Close()
	}()
	if err != nil {
		return err
	}
	if err := mergeSketches(ctx, rollups, merges); err != nil {
		return err
	}

	type columns struct {
		tenants, types []string
		buckets        []time.Time
		sketches       [][]byte
	}
	var updates [numLevels]columns
	for _, m := range merges {
		if m.merged == nil {
			continue
		}
		u, r := &updates[m.level], &rollups[m.level]
		u.tenants = append(u.tenants, r.tenants[m.i])
		u.types = append(u.types, r.types[m.i])
		u.buckets = append(u.buckets, r.buckets[m.i])
		u.sketches = append(u.sketches, m.merged)
	}
	batch = pgx.Batch{}
	for l := range levels {
		if u := &updates[l]; len(u.sketches) > 0 {
			batch.Queue(levels[l].sqlSketch, u.tenants, u.types, u.buckets, u.sketches)
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return fmt.Errorf("write back sketches: %w", err)
	}
	return nil
}

// readUpserted reads one upsert's RETURNING rows and appends to merges the
// rows whose stored sketch is not the batch's own. A row the upsert created,
// or one that had no sketch, returns the batch's sketch and needs nothing
// more.
func readUpserted(br pgx.BatchResults, level int, r *levelRollups, merges []sketchMerge) ([]sketchMerge, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		tenant, typ string
		bucket      time.Time
		stored      []byte
	)
	seen := 0
	for rows.Next() {
		if err := rows.Scan(&tenant, &typ, &bucket, &stored); err != nil {
			return nil, err
		}
		seen++
		i, found := slices.BinarySearchFunc(r.keys, rollupKey{tenant: tenant, typ: typ, bucket: bucket.Unix()},
			compareRollupKeys)
		if !found {
			return nil, errors.New("the database returned a row the batch did not write")
		}
		if r.sketches[i] == nil || stored == nil || bytes.Equal(stored, r.encoded[i]) {
			continue
		}
		merges = append(merges, sketchMerge{level: level, i: i, stored: stored})
		stored = nil // Scan reuses a non-nil slice
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if seen != len(r.keys) {
		return nil, fmt.Errorf("%d rows returned, want %d", seen, len(r.keys))
	}
	return merges, nil
}

// mergeSketches merges each batch sketch into its stored sketch, on every
// core: PostgreSQL has nothing to do meanwhile. A merge that changes nothing
// (every user of the batch was in the sketch already, as is usual once a
// sketch is dense) leaves merged nil.
func mergeSketches(ctx context.Context, rollups *[numLevels]levelRollups, merges []sketchMerge) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for j := range merges {
		g.Go(func() error {
			m := &merges[j]
			r := &rollups[m.level]
			// Merging the batch's (usually small) sketch into the stored one
			// costs in proportion to the batch's users, not the bucket's.
			merged, err := decodeSketch(m.stored)
			if err == nil {
				err = merged.Merge(r.sketches[m.i])
			}
			if err != nil {
				return fmt.Errorf("stored sketch of %s/%s at %s: %w",
					r.tenants[m.i], r.types[m.i], r.buckets[m.i].Format(time.RFC3339), err)
			}
			enc, err := encodeSketch(merged)
			if err != nil {
				return err
			}
			if !bytes.Equal(enc, m.stored) {
				m.merged = enc
			}
			return nil
		})
	}
	return g.Wait()
}

// applied summarises a batch of total events of which claimed were new, from
// its 1-minute rollups.
func (r levelRollups) applied(claimed, total int) Applied {
	out := Applied{Inserted: claimed, Duplicates: total - claimed}
	if len(r.keys) > 0 {
		out.Buckets = make([]ChangedBucket, len(r.keys))
	}
	for i, k := range r.keys {
		out.Buckets[i] = ChangedBucket{Tenant: tenancy.ID(k.tenant), Type: k.typ, Bucket: r.buckets[i]}
	}
	return out
}
