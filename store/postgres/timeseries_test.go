package postgres_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// seedTimeSeries stores, relative to day (midnight UTC):
//
//	acme   click: 2 at 00:00:10, 1 at 00:00:50, 1 at 00:01:00, 3 at 01:30, 1 at 23:59:59, 2 next day 00:00
//	acme   view:  5 at 00:00
//	globex click: 4 at 00:00, 1 at 01:30
func seedTimeSeries(t *testing.T, db *postgres.DB, day time.Time) {
	t.Helper()
	var events []postgres.Event
	n := 0
	add := func(tenant tenancy.ID, typ string, at time.Duration, count int) {
		for range count {
			n++
			e := event(tenant, "e"+time.Duration(n).String(), 0)
			e.Type = typ
			// Values and users for the other metrics; counts ignore them.
			e.Value = ptr(float64(n % 7))
			e.UserID = "u" + strconv.Itoa(n%5)
			e.Time = day.Add(at)
			e.ReceivedAt = e.Time
			events = append(events, e)
		}
	}
	add("acme", "click", 10*time.Second, 2)
	add("acme", "click", 50*time.Second, 1)
	add("acme", "click", time.Minute, 1)
	add("acme", "click", 90*time.Minute, 3)
	add("acme", "click", 24*time.Hour-time.Second, 1)
	add("acme", "click", 24*time.Hour, 2)
	add("acme", "view", 0, 5)
	add("globex", "click", 0, 4)
	add("globex", "click", 90*time.Minute, 1)
	_, err := db.ApplyBatch(t.Context(), postgres.Batch{Events: events})
	require.NoError(t, err)
}

func TestTimeSeriesCount(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	seedTimeSeries(t, db, day)
	at := func(d time.Duration, v float64) postgres.Point { return postgres.Point{Time: day.Add(d), Value: v} }

	tests := []struct {
		name        string
		tenant      tenancy.ID
		eventType   string
		start, end  time.Time
		granularity string
		want        []postgres.Point
	}{
		{
			name: "minute", tenant: "acme", eventType: "click", granularity: postgres.GranularityMinute,
			start: day, end: day.Add(48 * time.Hour),
			want: []postgres.Point{at(0, 3), at(time.Minute, 1), at(90*time.Minute, 3), at(24*time.Hour-time.Minute, 1), at(24*time.Hour, 2)},
		},
		{
			name: "hour", tenant: "acme", eventType: "click", granularity: postgres.GranularityHour,
			start: day, end: day.Add(48 * time.Hour),
			want: []postgres.Point{at(0, 4), at(time.Hour, 3), at(23*time.Hour, 1), at(24*time.Hour, 2)},
		},
		{
			name: "day", tenant: "acme", eventType: "click", granularity: postgres.GranularityDay,
			start: day, end: day.Add(48 * time.Hour),
			want: []postgres.Point{at(0, 8), at(24*time.Hour, 2)},
		},
		{
			name: "another tenant's same event type is invisible", tenant: "globex", eventType: "click",
			granularity: postgres.GranularityDay, start: day, end: day.Add(48 * time.Hour),
			want: []postgres.Point{at(0, 5)},
		},
		{
			name: "another event type", tenant: "acme", eventType: "view", granularity: postgres.GranularityHour,
			start: day, end: day.Add(48 * time.Hour),
			want: []postgres.Point{at(0, 5)},
		},
		{
			name: "start is inclusive, end exclusive", tenant: "acme", eventType: "click",
			granularity: postgres.GranularityMinute, start: day.Add(time.Minute), end: day.Add(24*time.Hour - time.Minute),
			want: []postgres.Point{at(time.Minute, 1), at(90*time.Minute, 3)},
		},
		{
			name: "end exactly at midnight excludes the next day", tenant: "acme", eventType: "click",
			granularity: postgres.GranularityDay, start: day, end: day.Add(24 * time.Hour),
			want: []postgres.Point{at(0, 8)},
		},
		{
			name: "unaligned start makes a partial first bucket", tenant: "acme", eventType: "click",
			granularity: postgres.GranularityHour, start: day.Add(time.Minute), end: day.Add(2 * time.Hour),
			want: []postgres.Point{at(0, 1), at(time.Hour, 3)},
		},
		{
			name: "empty range", tenant: "acme", eventType: "click", granularity: postgres.GranularityHour,
			start: day, end: day,
		},
		{
			name: "unknown tenant", tenant: "initech", eventType: "click", granularity: postgres.GranularityHour,
			start: day, end: day.Add(48 * time.Hour),
		},
		{
			name: "bounds in another zone mean the same instants", tenant: "acme", eventType: "click",
			granularity: postgres.GranularityDay,
			start:       day.In(time.FixedZone("NZDT", 13*3600)), end: day.Add(24 * time.Hour).In(time.FixedZone("PST", -8*3600)),
			want: []postgres.Point{at(0, 8)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.TimeSeriesCount(t.Context(), tt.tenant, tt.eventType, tt.start, tt.end, tt.granularity)
			require.NoError(t, err)
			require.Equal(t, tt.want, contents(t, got))
		})
	}
}

// contents checks that every point says when its bucket last changed and
// returns the points without it, for comparing what the buckets hold.
func contents(t *testing.T, points []postgres.Point) []postgres.Point {
	t.Helper()
	if points == nil {
		return nil
	}
	out := make([]postgres.Point, len(points))
	for i, p := range points {
		require.False(t, p.Updated.IsZero(), "bucket %s has no change time", p.Time)
		require.False(t, p.Updated.After(time.Now().Add(time.Minute)), "bucket %s changed in the future", p.Time)
		p.Updated = time.Time{}
		out[i] = p
	}
	return out
}

func TestTimeSeriesCountInvalid(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		eventType   string
		granularity string
		start, end  time.Time
	}{
		{"unknown granularity", "click", "week", day, day.Add(time.Hour)},
		{"SQL in granularity", "click", "minute', bucket) FROM tenants --", day, day.Add(time.Hour)},
		{"empty granularity", "click", "", day, day.Add(time.Hour)},
		{"end before start", "click", postgres.GranularityHour, day.Add(time.Hour), day},
		{"NUL in event type", "cl\x00ick", postgres.GranularityHour, day, day.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := db.TimeSeriesCount(t.Context(), "acme", tt.eventType, tt.start, tt.end, tt.granularity)
			require.ErrorIs(t, err, postgres.ErrInvalidArgument)
		})
	}
}
