package postgres_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// rollupTables are the rollup tables, finest first.
var rollupTables = []string{"rollups_1m", "rollups_1h", "rollups_1d"}

// levelRow is a row of a rollup table as tests read it back.
type levelRow struct {
	Tenant, Type string
	Bucket       time.Time
	Count        int64
	Sum          float64
	ValueCount   int64
	Min, Max     *float64
	HasUsers     bool
	UpdatedAt    time.Time
}

// readLevel reads a rollup table. HasUsers is true for a row with a sketch
// or, in the hourly and daily tables, one whose sketch is pending (see
// DB.MergeCoarseSketches): either way its bucket has users.
func readLevel(t *testing.T, db *postgres.DB, table string) []levelRow {
	t.Helper()
	hasUsers := `users_hll IS NOT NULL`
	if table != "rollups_1m" {
		hasUsers += ` OR users_pending`
	}
	rows, err := db.Pool().Query(t.Context(), `
SELECT tenant_id, event_type, bucket, event_count, value_sum, value_count, value_min, value_max,
       `+hasUsers+`, updated_at
FROM `+table+` ORDER BY tenant_id, event_type, bucket`)
	require.NoError(t, err)
	defer rows.Close()
	var out []levelRow
	for rows.Next() {
		var r levelRow
		require.NoError(t, rows.Scan(&r.Tenant, &r.Type, &r.Bucket, &r.Count, &r.Sum, &r.ValueCount,
			&r.Min, &r.Max, &r.HasUsers, &r.UpdatedAt))
		r.Bucket = r.Bucket.UTC()
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// rawLevel aggregates the stored raw events the way table should hold them:
// the reference the rollups must equal.
func rawLevel(t *testing.T, db *postgres.DB, table string) []levelRow {
	t.Helper()
	field := map[string]string{"rollups_1m": "minute", "rollups_1h": "hour", "rollups_1d": "day"}[table]
	rows, err := db.Pool().Query(t.Context(), `
SELECT tenant_id, event_type, date_trunc($1, event_time, 'UTC'), count(*), coalesce(sum(value), 0),
       count(value), min(value), max(value), bool_or(user_id <> '')
FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, field)
	require.NoError(t, err)
	defer rows.Close()
	var out []levelRow
	for rows.Next() {
		var r levelRow
		require.NoError(t, rows.Scan(&r.Tenant, &r.Type, &r.Bucket, &r.Count, &r.Sum, &r.ValueCount,
			&r.Min, &r.Max, &r.HasUsers))
		r.Bucket = r.Bucket.UTC()
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// withoutUpdatedAt drops the column the raw reference cannot know.
func withoutUpdatedAt(rows []levelRow) []levelRow {
	for i := range rows {
		rows[i].UpdatedAt = time.Time{}
	}
	return rows
}

// rawSeries computes metric per granularity bucket from raw events over
// [start, end), as TimeSeries should return it.
func rawSeries(t *testing.T, db *postgres.DB, tenant tenancy.ID, typ, metric string, start, end time.Time, granularity string) []postgres.Point {
	t.Helper()
	expr := map[string]string{
		postgres.MetricCount:       "count(*)::double precision",
		postgres.MetricSum:         "sum(value)",
		postgres.MetricAvg:         "avg(value)",
		postgres.MetricMin:         "min(value)",
		postgres.MetricMax:         "max(value)",
		postgres.MetricUniqueUsers: "count(DISTINCT nullif(user_id, ''))::double precision",
	}[metric]
	rows, err := db.Pool().Query(t.Context(), `
SELECT t, v FROM (
    SELECT date_trunc($5, event_time, 'UTC') AS t, `+expr+` AS v
    FROM events
    WHERE tenant_id = $1 AND event_type = $2 AND event_time >= $3 AND event_time < $4
    GROUP BY 1
) AS s
WHERE v IS NOT NULL AND v <> 0 OR $6
ORDER BY t`, string(tenant), typ, start, end, granularity, metric == postgres.MetricCount)
	require.NoError(t, err)
	defer rows.Close()
	var out []postgres.Point
	for rows.Next() {
		var p postgres.Point
		require.NoError(t, rows.Scan(&p.Time, &p.Value))
		p.Time = p.Time.UTC()
		out = append(out, p)
	}
	require.NoError(t, rows.Err())
	return out
}

// dropZeros removes zero points: a bucket whose value metric is 0 may or
// may not have a point, and callers fill zeros anyway.
func dropZeros(points []postgres.Point) []postgres.Point {
	var out []postgres.Point
	for _, p := range points {
		if p.Value != 0 {
			out = append(out, p)
		}
	}
	return out
}

// TestRollupsMatchRawEvents applies random events — late ones, events
// without user or value, duplicates within and across batches, replays whose
// content differs from the first copy — in random batches through two DB
// handles (so both ways of claiming keys run), then checks every rollup
// table, and every metric at every granularity over ranges that make
// TimeSeries read each table, against plain SQL over the stored raw events.
func TestRollupsMatchRawEvents(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	other := openDB(t, postgres.Config{URL: db.Pool().Config().ConnString()})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))

	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	tenants := []tenancy.ID{"acme", "globex"}
	types := []string{"click", "view"}
	var (
		all      []postgres.Event
		distinct = map[string]bool{}
		inserted int
	)
	newEvent := func() postgres.Event {
		tenant := tenants[rng.IntN(len(tenants))]
		e := postgres.Event{
			Tenant: tenant, EventID: fmt.Sprintf("e%d", rng.Int64()), Type: types[rng.IntN(len(types))],
			// Three days, so that hours and days hold several minutes and hours.
			Time: day.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))),
		}
		e.ReceivedAt = e.Time.Add(time.Second)
		if rng.IntN(10) < 7 {
			e.UserID = fmt.Sprintf("user-%d", rng.IntN(300))
		}
		if rng.IntN(10) < 6 {
			// Quarters keep every sum exact in float64, whatever the order.
			e.Value = ptr(float64(rng.IntN(400)-200) / 4)
		}
		return e
	}
	for b := range 25 {
		events := make([]postgres.Event, 1+rng.IntN(300))
		for i := range events {
			switch {
			case len(all) > 0 && rng.IntN(10) == 0:
				// A replay of an earlier event; half of them with other
				// content, which must not count: the first copy wins.
				e := all[rng.IntN(len(all))]
				if rng.IntN(2) == 0 {
					replay := newEvent()
					replay.Tenant, replay.EventID = e.Tenant, e.EventID
					e = replay
				}
				events[i] = e
			case i > 0 && rng.IntN(20) == 0:
				events[i] = events[rng.IntN(i)] // a duplicate within the batch
			default:
				events[i] = newEvent()
			}
		}
		handle := db
		if b%3 == 2 {
			handle = other
		}
		applied, err := handle.ApplyBatch(t.Context(), postgres.Batch{Events: events})
		require.NoError(t, err)
		require.Equal(t, len(events), applied.Inserted+applied.Duplicates)
		inserted += applied.Inserted
		for _, e := range events {
			distinct[string(e.Tenant)+"/"+e.EventID] = true
		}
		all = append(all, events...)
	}
	require.Equal(t, len(distinct), inserted, "each distinct event inserted once")
	require.Equal(t, inserted, countRows(t, db, "events"))

	for _, table := range rollupTables {
		require.Equal(t, rawLevel(t, db, table), withoutUpdatedAt(readLevel(t, db, table)), table)
	}

	// Ranges aligned to days, to hours only, and to minutes only: day
	// series read rollups_1d, rollups_1h and rollups_1m respectively.
	ranges := []struct{ start, end time.Time }{
		{day, day.Add(72 * time.Hour)},
		{day.Add(5 * time.Hour), day.Add(53 * time.Hour)},
		{day.Add(7*time.Hour + 13*time.Minute), day.Add(60*time.Hour + 59*time.Minute)},
	}
	metrics := []string{postgres.MetricCount, postgres.MetricSum, postgres.MetricAvg, postgres.MetricMin,
		postgres.MetricMax, postgres.MetricUniqueUsers}
	for _, tenant := range tenants {
		for _, typ := range types {
			for _, g := range []string{postgres.GranularityMinute, postgres.GranularityHour, postgres.GranularityDay} {
				for _, metric := range metrics {
					for _, r := range ranges {
						name := fmt.Sprintf("%s/%s %s %s [%s, %s)", tenant, typ, metric, g,
							r.start.Format(time.RFC3339), r.end.Format(time.RFC3339))
						got, err := db.TimeSeries(t.Context(), tenant, typ, metric, r.start, r.end, g)
						require.NoError(t, err, name)
						want := rawSeries(t, db, tenant, typ, metric, r.start, r.end, g)
						if metric != postgres.MetricUniqueUsers {
							if metric != postgres.MetricCount {
								got = dropZeros(got)
							}
							require.Equal(t, want, contents(t, got), name)
							continue
						}
						require.Len(t, got, len(want), name)
						for i := range want {
							require.Equal(t, want[i].Time, got[i].Time, name)
							require.InDelta(t, want[i].Value, got[i].Value,
								3*postgres.UniqueUsersRelativeError*want[i].Value, "%s at %s", name, want[i].Time)
						}
					}
				}
			}
		}
	}
}

// TestUniqueUsersDayIsMergeOfHoursAndMinutes: a day's unique users read from
// rollups_1d equal the merge of its hours' sketches and of its minutes'.
func TestUniqueUsersDayIsMergeOfHoursAndMinutes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 4))
	var events []postgres.Event
	for i := range 6000 {
		e := event("acme", fmt.Sprintf("e%d", i), 0)
		e.Time = day.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		e.UserID = fmt.Sprintf("user-%d", rng.IntN(4000))
		events = append(events, e)
	}
	for chunk := range 6 {
		_, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: events[chunk*1000 : (chunk+1)*1000]})
		require.NoError(t, err)
	}
	dayPoint := func(start time.Time) postgres.Point {
		t.Helper()
		points, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
			start, day.Add(24*time.Hour), postgres.GranularityDay)
		require.NoError(t, err)
		require.NotEmpty(t, points)
		last := points[len(points)-1]
		require.Equal(t, day, last.Time)
		return last
	}
	check := func(stage string) {
		fromDay := dayPoint(day)                       // rollups_1d
		fromHours := dayPoint(day.Add(-time.Hour))     // rollups_1h: not day-aligned
		fromMinutes := dayPoint(day.Add(-time.Minute)) // rollups_1m: not hour-aligned
		require.Equal(t, fromDay, fromHours, stage)
		require.Equal(t, fromDay, fromMinutes, stage)

		var exact float64
		require.NoError(t, db.Pool().QueryRow(t.Context(),
			`SELECT count(DISTINCT user_id) FROM events WHERE tenant_id = 'acme'`).Scan(&exact))
		require.InDelta(t, exact, fromDay.Value, 3*postgres.UniqueUsersRelativeError*exact, stage)

		// The same holds per hour: rollups_1h against the merge of its minutes.
		fromHourRows, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
			day, day.Add(24*time.Hour), postgres.GranularityHour)
		require.NoError(t, err)
		fromMinuteRows, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
			day.Add(-time.Minute), day.Add(24*time.Hour), postgres.GranularityHour)
		require.NoError(t, err)
		require.Len(t, fromHourRows, 24, stage)
		require.Equal(t, fromHourRows, fromMinuteRows, "%s: no events the day before, so no extra point", stage)
	}
	// Before the coarse sketches are merged, a query merges the finer ones
	// itself; afterwards it reads the merged ones; the answers agree.
	require.Equal(t, 24, pendingRows(t, db, "rollups_1h"))
	check("pending")
	mergeCoarse(t, db)
	require.Zero(t, pendingRows(t, db, "rollups_1h"))
	require.Zero(t, pendingRows(t, db, "rollups_1d"))
	check("merged")
}

// TestLateEventUpdatesEveryLevel: an event hours late lands in its own
// minute, hour and day, which all change, updated_at included, while the
// rows it does not belong to keep theirs.
func TestLateEventUpdatesEveryLevel(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	now := time.Date(2026, 3, 14, 18, 30, 0, 0, time.UTC)
	late := now.Add(-5*time.Hour - 17*time.Minute) // 13:13, the same day
	first := []postgres.Event{
		withUser(withValue(eventAt("acme", "e1", now), 10), "u1"),
		withUser(withValue(eventAt("acme", "e2", late), 5), "u1"),
	}
	_, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: first})
	require.NoError(t, err)
	before := map[string][]levelRow{}
	for _, table := range rollupTables {
		before[table] = readLevel(t, db, table)
	}

	applied, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: []postgres.Event{
		withUser(withValue(eventAt("acme", "e3", late.Add(20*time.Second)), -1), "u2"),
	}})
	require.NoError(t, err)
	require.Equal(t, []postgres.ChangedBucket{{Tenant: "acme", Type: "click", Bucket: late}}, applied.Buckets)

	buckets := map[string]struct {
		late, now   time.Time
		step        time.Duration
		granularity string
	}{
		"rollups_1m": {late, now, time.Minute, postgres.GranularityMinute},
		"rollups_1h": {late.Truncate(time.Hour), now.Truncate(time.Hour), time.Hour, postgres.GranularityHour},
		"rollups_1d": {late.Truncate(24 * time.Hour), now.Truncate(24 * time.Hour), 24 * time.Hour, postgres.GranularityDay},
	}
	find := func(rows []levelRow, bucket time.Time) levelRow {
		for _, r := range rows {
			if r.Bucket.Equal(bucket) {
				return r
			}
		}
		require.Failf(t, "no row", "bucket %s", bucket)
		return levelRow{}
	}
	for _, table := range rollupTables {
		after := readLevel(t, db, table)
		b := buckets[table]
		old, cur := find(before[table], b.late), find(after, b.late)
		require.Equal(t, old.Count+1, cur.Count, table)
		require.Equal(t, old.Sum-1, cur.Sum, table)
		require.Equal(t, -1.0, *cur.Min, table)
		require.True(t, cur.UpdatedAt.After(old.UpdatedAt), "%s: updated_at moves on", table)

		users, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
			b.late, b.late.Add(b.step), b.granularity)
		require.NoError(t, err)
		require.Equal(t, []postgres.Point{{Time: b.late, Value: 2}}, contents(t, users), "%s: u1 and u2", table)
		require.True(t, users[0].Updated.Equal(cur.UpdatedAt), "%s: the point says when the late event changed it", table)

		if table != "rollups_1d" { // the day holds both events
			require.Equal(t, find(before[table], b.now), find(after, b.now), "%s: the current bucket is untouched", table)
		}
	}
}

// TestApplyBatchConcurrentSameBuckets runs pairs of ApplyBatch calls at once
// whose events fall into the same minute, hour and day: no increment and no
// user is lost, at any level. Then both apply the same events at once, and
// each still counts once.
func TestApplyBatchConcurrentSameBuckets(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	const (
		rounds   = 12
		perBatch = 40
	)
	at := minute.Add(30 * time.Second)
	batch := func(round, worker int, shared bool) postgres.Batch {
		var events []postgres.Event
		for i := range perBatch {
			id := fmt.Sprintf("r%d-w%d-%d", round, worker, i)
			if shared {
				id = fmt.Sprintf("r%d-shared-%d", round, i)
			}
			e := withValue(eventAt("acme", id, at.Add(time.Duration(i)*time.Second/perBatch)), float64(i))
			events = append(events, withUser(e, "user-"+id))
		}
		return postgres.Batch{Events: events}
	}
	apply := func(shared bool) []postgres.Applied {
		applied := make([]postgres.Applied, 2*rounds)
		for round := range rounds {
			var (
				g     errgroup.Group
				start sync.WaitGroup
			)
			start.Add(1)
			for w := range 2 {
				g.Go(func() error {
					start.Wait()
					a, err := db.ApplyBatch(t.Context(), batch(round, w, shared))
					applied[2*round+w] = a
					return err
				})
			}
			start.Done()
			require.NoError(t, g.Wait())
		}
		return applied
	}

	apply(false)
	const total = 2 * rounds * perBatch
	for _, table := range rollupTables {
		rows := readLevel(t, db, table)
		require.Len(t, rows, 1, table)
		require.Equal(t, int64(total), rows[0].Count, table)
		require.Equal(t, float64(2*rounds*perBatch*(perBatch-1)/2), rows[0].Sum, table)
	}
	requireUsers := func(want float64) {
		t.Helper()
		for _, g := range []string{postgres.GranularityMinute, postgres.GranularityHour, postgres.GranularityDay} {
			start := minute.Truncate(map[string]time.Duration{
				postgres.GranularityMinute: time.Minute, postgres.GranularityHour: time.Hour,
				postgres.GranularityDay: 24 * time.Hour}[g])
			points, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
				start, start.Add(24*time.Hour), g)
			require.NoError(t, err)
			require.Len(t, points, 1, g)
			// A lost sketch update would lose 40 users; sparse sketches of
			// this size are exact but for rare hash collisions.
			require.InDelta(t, want, points[0].Value, 2, g)
		}
	}
	requireUsers(total)

	applied := apply(true)
	for round := range rounds {
		a, b := applied[2*round], applied[2*round+1]
		require.Equal(t, perBatch, a.Inserted+b.Inserted, "round %d: each shared event is inserted once", round)
		require.Equal(t, perBatch, a.Duplicates+b.Duplicates)
	}
	const shared = rounds * perBatch
	for _, table := range rollupTables {
		rows := readLevel(t, db, table)
		require.Equal(t, int64(total+shared), rows[0].Count, table)
	}
	requireUsers(total + shared)
	require.Equal(t, total+shared, countRows(t, db, "events"))
	require.Equal(t, total+shared, countRows(t, db, dedupTable(db)))
}

// TestDuplicatesAcrossBatchesAtEveryLevel replays events through the handle
// that applied them (which remembers their keys) and through a fresh one
// (which does not, so its bulk claim fails and falls back): either way each
// event counts once in every rollup table.
func TestDuplicatesAcrossBatchesAtEveryLevel(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	fresh := openDB(t, postgres.Config{URL: db.Pool().Config().ConnString()})
	events := func(ids ...int) []postgres.Event {
		var out []postgres.Event
		for _, id := range ids {
			e := eventAt("acme", fmt.Sprintf("e%d", id), minute.Add(time.Duration(id)*time.Hour))
			out = append(out, withUser(withValue(e, float64(id)), fmt.Sprintf("u%d", id%3)))
		}
		return out
	}
	steps := []struct {
		db   *postgres.DB
		ids  []int
		want postgres.Applied
	}{
		{db, []int{1, 2, 3}, postgres.Applied{Inserted: 3}},
		{db, []int{1, 2, 3}, postgres.Applied{Duplicates: 3}},
		{fresh, []int{3, 4, 1}, postgres.Applied{Inserted: 1, Duplicates: 2}},
		{fresh, []int{4, 5, 5, 40}, postgres.Applied{Inserted: 2, Duplicates: 2}},
		{db, []int{40, 5, 6}, postgres.Applied{Inserted: 1, Duplicates: 2}},
	}
	for i, s := range steps {
		got, err := s.db.ApplyBatch(t.Context(), postgres.Batch{Events: events(s.ids...)})
		require.NoError(t, err, "step %d", i)
		got.Buckets = nil
		require.Equal(t, s.want, got, "step %d", i)
	}
	for _, table := range rollupTables {
		require.Equal(t, rawLevel(t, db, table), withoutUpdatedAt(readLevel(t, db, table)), table)
		var count int64
		for _, r := range readLevel(t, db, table) {
			count += r.Count
		}
		require.EqualValues(t, 7, count, table)
	}
	points, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers,
		minute.Truncate(24*time.Hour), minute.Truncate(24*time.Hour).Add(72*time.Hour), postgres.GranularityDay)
	require.NoError(t, err)
	var users float64
	for _, p := range points {
		users = math.Max(users, p.Value)
	}
	require.LessOrEqual(t, users, 3.0, "u0, u1 and u2 only")
}

func TestTimeSeriesInvalidMetric(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, metric := range []string{"", "median", "count; DROP TABLE events"} {
		_, err := db.TimeSeries(t.Context(), "acme", "click", metric, minute, minute.Add(time.Hour), postgres.GranularityHour)
		require.ErrorIs(t, err, postgres.ErrInvalidArgument, metric)
	}
}

// TestMigration003 upgrades a database holding 1-minute rollups: hours and
// days are backfilled from them (without users, which were not tracked),
// and later batches add to the backfilled rows.
func TestMigration003(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{})
	migrateTo(t, db, 2)
	_, err := db.Pool().Exec(t.Context(), `
INSERT INTO rollups_1m (tenant_id, event_type, bucket, event_count, value_sum, value_count, value_min, value_max)
VALUES ('acme', 'click', '2026-03-14 15:09:00Z', 3, 7.5, 2, 2.5, 5),
       ('acme', 'click', '2026-03-14 15:40:00Z', 1, 0, 0, NULL, NULL),
       ('acme', 'click', '2026-03-15 00:01:00Z', 2, -4, 1, -4, -4)`)
	require.NoError(t, err)
	require.NoError(t, postgres.Migrate(t.Context(), db))
	requireSchema(t, db)

	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	hours := withoutUpdatedAt(readLevel(t, db, "rollups_1h"))
	require.Equal(t, []levelRow{
		{Tenant: "acme", Type: "click", Bucket: day.Add(15 * time.Hour), Count: 4, Sum: 7.5, ValueCount: 2, Min: ptr(2.5), Max: ptr(5.0)},
		{Tenant: "acme", Type: "click", Bucket: day.Add(24 * time.Hour), Count: 2, Sum: -4, ValueCount: 1, Min: ptr(-4.0), Max: ptr(-4.0)},
	}, hours)
	days := withoutUpdatedAt(readLevel(t, db, "rollups_1d"))
	require.Equal(t, []levelRow{
		{Tenant: "acme", Type: "click", Bucket: day, Count: 4, Sum: 7.5, ValueCount: 2, Min: ptr(2.5), Max: ptr(5.0)},
		{Tenant: "acme", Type: "click", Bucket: day.Add(24 * time.Hour), Count: 2, Sum: -4, ValueCount: 1, Min: ptr(-4.0), Max: ptr(-4.0)},
	}, days)

	_, err = db.ApplyBatch(t.Context(), postgres.Batch{Events: []postgres.Event{
		withUser(withValue(eventAt("acme", "new", day.Add(15*time.Hour+time.Minute)), 1), "u1"),
	}})
	require.NoError(t, err)
	days = readLevel(t, db, "rollups_1d")
	require.Equal(t, int64(5), days[0].Count)
	require.Equal(t, 1.0, *days[0].Min)
	require.True(t, days[0].HasUsers, "a row without users gets them")
	points, err := db.TimeSeries(t.Context(), "acme", "click", postgres.MetricUniqueUsers, day, day.Add(24*time.Hour), postgres.GranularityDay)
	require.NoError(t, err)
	require.Equal(t, []postgres.Point{{Time: day, Value: 1}}, contents(t, points))
}

// eventAt builds a valid "click" event at an exact time.
func eventAt(tenant tenancy.ID, id string, at time.Time) postgres.Event {
	e := event(tenant, id, 0)
	e.Time, e.ReceivedAt = at, at.Add(time.Second)
	return e
}

func withUser(e postgres.Event, user string) postgres.Event {
	e.UserID = user
	return e
}
