package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Claiming a batch's event keys is the exactly-once step. On plain
// PostgreSQL the key is events' primary key, so claiming an event is storing
// its row; on TimescaleDB it is event_dedup's, and the claimed events are
// copied into events afterwards (see claimLayout). There are two ways to
// insert a key only if it is new:
//
//   - INSERT ... ON CONFLICT DO NOTHING RETURNING (sqlInsertEvents,
//     sqlClaimEvents) skips keys that exist and says which it inserted. It
//     inserts row by row with speculative insertion, two to three times the
//     cost of COPY.
//   - COPY inserts in bulk, but fails the whole statement on the first key
//     that exists (unique violation).
//
// Keys are almost always new: duplicates come from client retries and from
// replays after a crash or rebalance. So claimEvents COPYs the keys it has no
// reason to doubt, inside a savepoint, and claims the rest with ON CONFLICT.
// If the COPY fails because a key existed after all, it rolls back to the
// savepoint, moves the key PostgreSQL names (by its row) to the ON CONFLICT
// claims and COPYs the others again, a few times at most, before claiming
// all of them with ON CONFLICT. The unique index decides in every case; the
// choice of path only changes the cost.
//
// The reason to doubt a key is recentKeys: the keys this process applied
// lately. A client retry usually lands in the same partition, and so the
// same consumer process, seconds after the first copy.
//
// Each of the two statements claims its keys in key order, but together they
// do not, so two transactions claiming overlapping keys at the same moment
// (two consumers during a rebalance) can deadlock. PostgreSQL then aborts one
// of them, and ApplyBatch runs that transaction again claiming every key in
// one sorted ON CONFLICT statement, which cannot deadlock with another such
// statement; each deadlock turns one more of the contenders into that form.

// The recent-key table: recentKeySets sets of recentKeyWays fingerprints,
// 2^22 in all (32 MiB, allocated by the first ApplyBatch), which at 150,000
// events per second is the last half minute of keys: long after a client
// retry. A key is forgotten only when newer keys of its set push it out.
const (
	recentKeyWays = 4
	recentKeySets = 1 << 20
)

// recentKeys remembers fingerprints of recently applied event keys in a
// fixed, set-associative table: a key is looked up in its set of
// recentKeyWays slots, and a new key replaces the set's slots in turn. A
// lookup can only be wrong by forgetting (a false "new"), never by
// inventing, short of a 64-bit hash collision. Either mistake costs speed,
// never correctness. It is safe for concurrent use: slots are atomic, and a
// race between two adds to one set at worst overwrites a key a moment early.
type recentKeys struct {
	once  sync.Once
	slots []atomic.Uint64
	// next is each set's next slot to replace.
	next []atomic.Uint32
}

func newRecentKeys() *recentKeys {
	return &recentKeys{}
}

// table allocates the table on first use: only the rollup consumer's
// handles apply batches, and the others never pay for it.
func (r *recentKeys) table() ([]atomic.Uint64, []atomic.Uint32) {
	r.once.Do(func() {
		r.slots = make([]atomic.Uint64, recentKeySets*recentKeyWays)
		r.next = make([]atomic.Uint32, recentKeySets)
	})
	return r.slots, r.next
}

func (r *recentKeys) contains(fp uint64) bool {
	slots, _ := r.table()
	set := slots[fp%recentKeySets*recentKeyWays:][:recentKeyWays]
	for i := range set {
		if set[i].Load() == fp {
			return true
		}
	}
	return false
}

func (r *recentKeys) add(fp uint64) {
	if r.contains(fp) {
		return
	}
	slots, next := r.table()
	s := fp % recentKeySets
	way := next[s].Add(1) % recentKeyWays
	slots[s*recentKeyWays+uint64(way)].Store(fp)
}

// distinctKeys are a batch's distinct (tenant, event ID) keys: the first
// copy of each, sorted bytewise by tenant then event ID (the order of the
// "C" collation, and so of event_dedup's primary key).
type distinctKeys struct {
	// sorted are the indexes in Batch.Events of the first copies, in key
	// order, and fingerprints their keys' fingerprints in the same order.
	sorted       []int32
	fingerprints []uint64
}

func compareKeys(a, b *Event) int {
	if c := strings.Compare(string(a.Tenant), string(b.Tenant)); c != 0 {
		return c
	}
	return strings.Compare(a.EventID, b.EventID)
}

func distinctKeysOf(events []Event) distinctKeys {
	order := make([]int32, len(events))
	for i := range order {
		order[i] = int32(i)
	}
	// Ties break on the index, so the first copy of a key leads its run.
	slices.SortFunc(order, func(a, b int32) int {
		if c := compareKeys(&events[a], &events[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	k := distinctKeys{sorted: order[:0]}
	for j, i := range order {
		if j > 0 && compareKeys(&events[i], &events[k.sorted[len(k.sorted)-1]]) == 0 {
			continue
		}
		k.sorted = append(k.sorted, i)
	}
	k.fingerprints = make([]uint64, len(k.sorted))
	var d xxhash.Digest
	for j, i := range k.sorted {
		d.Reset()
		_, _ = d.WriteString(string(events[i].Tenant))
		_, _ = d.Write([]byte{0})
		_, _ = d.WriteString(events[i].EventID)
		k.fingerprints[j] = max(d.Sum64(), 1) // 0 marks an empty slot
	}
	return k
}

// claimLayout is where a schema keeps its dedup keys, and so what claiming
// a key writes.
type claimLayout struct {
	// keysInEvents: the plain layout, where events' primary key is the
	// dedup key and claiming an event stores its whole row. Otherwise
	// (TimescaleDB) the keys live in event_dedup and the claimed events are
	// copied into events afterwards.
	keysInEvents bool
}

// copySQL is the COPY that claims keys in bulk, and appendRow its row.
func (l claimLayout) copySQL() string {
	if l.keysInEvents {
		return sqlCopyEvents
	}
	return sqlCopyClaims
}

func (l claimLayout) appendRow(b []byte, e *Event) []byte {
	if l.keysInEvents {
		return appendEventRow(b, e)
	}
	return appendClaimRow(b, e)
}

// claimStatement is an INSERT ... ON CONFLICT DO NOTHING RETURNING of some
// of a batch's keys, and an index from a returned key back to its event.
type claimStatement struct {
	sql  string
	args []any
	// index maps tenant + "\x00" + event ID (neither may contain NUL) to
	// the event's index in Batch.Events.
	index map[string]int32
}

// conflictClaims builds the claimStatement of events[indexes].
func (l claimLayout) conflictClaims(events []Event, indexes []int32) claimStatement {
	n := len(indexes)
	tenants, ids, times := make([]string, n), make([]string, n), make([]time.Time, n)
	index := make(map[string]int32, n)
	for j, i := range indexes {
		e := &events[i]
		tenants[j], ids[j], times[j] = string(e.Tenant), e.EventID, e.Time
		index[string(e.Tenant)+"\x00"+e.EventID] = i
	}
	if !l.keysInEvents {
		return claimStatement{sql: sqlClaimEvents, args: []any{tenants, ids, times}, index: index}
	}
	types, users, sessions := make([]string, n), make([]string, n), make([]string, n)
	received, props, values := make([]time.Time, n), make([]string, n), make([]*float64, n)
	var buf []byte
	for j, i := range indexes {
		e := &events[i]
		types[j], users[j], sessions[j], received[j], values[j] = e.Type, e.UserID, e.SessionID, e.ReceivedAt, e.Value
		buf = appendJSONObject(buf[:0], e.Properties)
		props[j] = string(buf)
	}
	return claimStatement{sql: sqlInsertEvents, index: index,
		args: []any{tenants, ids, types, users, sessions, times, received, props, values}}
}

// claimEvents stores the batch's offsets (fenced) and claims its distinct
// keys, and returns the indexes in b.Events of the events it claimed, in
// no particular order. With layout.keysInEvents the claimed events are
// stored too. See the comment at the top of this file.
//
// While the bulk COPY runs, aggregate (if not nil) is called in another
// goroutine with the events the COPY will have claimed if it succeeds; the
// result is only good if claimEvents returns optimistic true.
func (db *DB) claimEvents(ctx context.Context, tx pgx.Tx, b Batch, offsets offsetColumns, keys distinctKeys,
	doubtAll bool, layout claimLayout, aggregate func(claimed []int32)) (claimed []int32, optimistic bool, err error) {
	var doubtful, fresh []int32
	for j, i := range keys.sorted {
		if doubtAll || db.recent.contains(keys.fingerprints[j]) {
			doubtful = append(doubtful, i)
		} else {
			fresh = append(fresh, i)
		}
	}

	// The offsets go first, so a fenced consumer queues behind its
	// successor's row lock; the doubtful keys share the round trip.
	var batch pgx.Batch
	if len(offsets.topics) > 0 {
		batch.Queue(sqlUpsertOffsets, b.Group, b.Generation, offsets.topics, offsets.partitions, offsets.next)
	}
	var doubtfulClaims claimStatement
	if len(doubtful) > 0 {
		doubtfulClaims = layout.conflictClaims(b.Events, doubtful)
		batch.Queue(doubtfulClaims.sql, doubtfulClaims.args...)
	}
	claimed = make([]int32, 0, len(keys.sorted))
	if batch.Len() > 0 {
		err := func() error {
			br := tx.SendBatch(ctx, &batch)
			defer br.Close()
			if len(offsets.topics) > 0 {
				rows, err := br.Query()
				if err != nil {
					return fmt.Errorf("upsert offsets: %w", err)
				}
				if err := checkOffsets(rows, offsets); err != nil {
					return err
				}
			}
			if len(doubtful) > 0 {
				var err error
				if claimed, err = readClaims(br, doubtfulClaims, claimed); err != nil {
					return err
				}
			}
			return br.Close()
		}()
		if err != nil {
			return nil, false, err
		}
	}
	if len(fresh) == 0 {
		return claimed, false, nil
	}

	// The COPY's rows are claimed if it succeeds; aggregate them meanwhile.
	hoped := slices.Concat(claimed, fresh)
	aggregated := make(chan struct{})
	go func() {
		defer close(aggregated)
		if aggregate != nil {
			aggregate(hoped)
		}
	}()
	copied, conflict, err := copyClaims(ctx, tx, layout, b.Events, fresh)
	<-aggregated
	if err != nil {
		return nil, false, err
	}
	if copied {
		return hoped, true, nil
	}
	// A key existed after all: one this process forgot, or one another
	// process applied. When PostgreSQL names the row, that key joins the
	// ON CONFLICT claims and the others are copied again; a few retries
	// cover a batch with a few such keys without giving up the bulk path.
	var conflicting []int32
	for attempt := 1; conflict >= 0 && attempt <= maxCopyRetries; attempt++ {
		conflicting = append(conflicting, fresh[conflict])
		fresh = slices.Delete(fresh, conflict, conflict+1)
		if len(fresh) == 0 {
			break
		}
		if copied, conflict, err = copyClaims(ctx, tx, layout, b.Events, fresh); err != nil {
			return nil, false, err
		}
		if copied {
			claimed = append(claimed, fresh...)
			fresh = nil
			break
		}
	}
	c := layout.conflictClaims(b.Events, append(conflicting, fresh...))
	var retry pgx.Batch
	retry.Queue(c.sql, c.args...)
	br := tx.SendBatch(ctx, &retry)
	defer br.Close()
	if claimed, err = readClaims(br, c, claimed); err != nil {
		return nil, false, err
	}
	if err := br.Close(); err != nil {
		return nil, false, fmt.Errorf("claim events: %w", err)
	}
	return claimed, false, nil
}

// maxCopyRetries bounds how often claimEvents copies a batch's keys again
// after a COPY failed on a key that existed.
const maxCopyRetries = 3

// copyClaims COPYs the rows of events[indexes] that claim their keys inside
// a savepoint. It reports false, with the savepoint rolled back, when a key
// existed (or was being inserted by a transaction that then committed), and
// then the position in indexes of the row that failed, or -1 if the error
// did not say: the caller claims that key with ON CONFLICT instead. A
// deadlock is returned as an error, for ApplyBatch to retry the transaction.
func copyClaims(ctx context.Context, tx pgx.Tx, layout claimLayout, events []Event, indexes []int32) (bool, int, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, -1, fmt.Errorf("claim events: savepoint: %w", err)
	}
	n, err := copyRows(ctx, sp.Conn().PgConn(), layout.copySQL(), len(indexes), func(buf []byte, j int) []byte {
		return layout.appendRow(buf, &events[indexes[j]])
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation {
			if err := sp.Rollback(ctx); err != nil {
				return false, -1, fmt.Errorf("claim events: rollback to savepoint: %w", err)
			}
			return false, copyErrorRow(pgErr, len(indexes)), nil
		}
		return false, -1, fmt.Errorf("claim events: copy: %w", err)
	}
	if err := copyCount("claim events", n, len(indexes)); err != nil {
		return false, -1, err
	}
	if err := sp.Commit(ctx); err != nil {
		return false, -1, fmt.Errorf("claim events: release savepoint: %w", err)
	}
	return true, -1, nil
}

// copyErrorRow returns the position among rows of the row a COPY failed on,
// from the error's context ("COPY events, line 42": lines count rows from 1,
// also in binary format), or -1 if the context does not name one in range.
func copyErrorRow(pgErr *pgconn.PgError, rows int) int {
	_, line, ok := strings.Cut(pgErr.Where, ", line ")
	if !ok {
		return -1
	}
	line, _, _ = strings.Cut(line, ",")
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 1 || n > rows {
		return -1
	}
	return n - 1
}

// readClaims reads a claimStatement's RETURNING rows and appends the
// indexes of the claimed events to claimed.
func readClaims(br pgx.BatchResults, c claimStatement, claimed []int32) ([]int32, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	defer rows.Close()
	var buf []byte
	for rows.Next() {
		// The raw bytes of a text column are its UTF-8; looking the key up
		// through them spares a string per event.
		raw := rows.RawValues()
		if len(raw) != 2 {
			return nil, fmt.Errorf("claim events: %d columns returned, want 2", len(raw))
		}
		buf = append(append(append(buf[:0], raw[0]...), 0), raw[1]...)
		i, ok := c.index[string(buf)]
		if !ok {
			return nil, errors.New("claim events: the database returned a key the batch does not have")
		}
		claimed = append(claimed, i)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	return claimed, nil
}

// remember records a committed batch's keys as recent.
func (db *DB) remember(keys distinctKeys) {
	for _, fp := range keys.fingerprints {
		db.recent.add(fp)
	}
}
