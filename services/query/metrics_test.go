package query_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// valueEvent is an event with an optional value and user.
type valueEvent struct {
	at    time.Time
	value *float64
	user  string
}

func num(v float64) *float64 { return &v }

// applyValues stores "purchase" events of acme, each with a fresh ID.
func (e env) applyValues(t *testing.T, events ...valueEvent) {
	t.Helper()
	batch := postgres.Batch{Group: "test", Generation: 1}
	for _, ev := range events {
		batch.Events = append(batch.Events, postgres.Event{
			Tenant: "acme", EventID: fmt.Sprintf("e-%d", eventSeq.Add(1)), Type: "purchase",
			Time: ev.at, ReceivedAt: ev.at, Value: ev.value, UserID: ev.user,
		})
	}
	applied, err := e.db.ApplyBatch(t.Context(), batch)
	require.NoError(t, err)
	require.Equal(t, len(events), applied.Inserted)
}

func metricReq(m queryv1.Metric, g queryv1.Granularity, start, end time.Time) *queryv1.GetTimeSeriesRequest {
	r := countReq("purchase", g, start, end)
	r.Metric = m
	return r
}

func TestGetTimeSeriesMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{})
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	h := func(hours, minutes int) time.Time {
		return day.Add(time.Duration(hours)*time.Hour + time.Duration(minutes)*time.Minute)
	}
	e.applyValues(t,
		valueEvent{h(10, 5), num(4), "ann"},
		valueEvent{h(10, 59), num(-2.5), "bob"},
		valueEvent{h(10, 30), nil, "ann"}, // no value: counts, but not in SUM..MAX
		valueEvent{h(11, 0), num(10), ""}, // no user: not a unique user
		valueEvent{h(12, 1), nil, "cy"},
		valueEvent{h(25, 0), num(1), "ann"}, // the next day
	)
	hours := func(v10, v11, v12 float64) []pt {
		return []pt{{h(10, 0), v10}, {h(11, 0), v11}, {h(12, 0), v12}}
	}
	tests := []struct {
		metric     queryv1.Metric
		gran       queryv1.Granularity
		start, end time.Time
		want       []pt
	}{
		{queryv1.Metric_METRIC_COUNT, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(3, 1, 1)},
		{queryv1.Metric_METRIC_SUM, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(1.5, 10, 0)},
		{queryv1.Metric_METRIC_AVG, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(0.75, 10, 0)},
		{queryv1.Metric_METRIC_MIN, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(-2.5, 10, 0)},
		{queryv1.Metric_METRIC_MAX, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(4, 10, 0)},
		{queryv1.Metric_METRIC_UNIQUE_USERS, queryv1.Granularity_GRANULARITY_HOUR, h(10, 0), h(13, 0), hours(2, 0, 1)},
		{queryv1.Metric_METRIC_UNIQUE_USERS, queryv1.Granularity_GRANULARITY_DAY, day, day.Add(48 * time.Hour),
			[]pt{{day, 3}, {day.Add(24 * time.Hour), 1}}},
		{queryv1.Metric_METRIC_SUM, queryv1.Granularity_GRANULARITY_DAY, day, day.Add(48 * time.Hour),
			[]pt{{day, 11.5}, {day.Add(24 * time.Hour), 1}}},
		{queryv1.Metric_METRIC_MIN, queryv1.Granularity_GRANULARITY_MINUTE, h(10, 58), h(11, 1),
			[]pt{{h(10, 58), 0}, {h(10, 59), -2.5}, {h(11, 0), 10}}},
		{queryv1.Metric_METRIC_UNIQUE_USERS, queryv1.Granularity_GRANULARITY_MINUTE, h(10, 4), h(10, 6),
			[]pt{{h(10, 4), 0}, {h(10, 5), 1}}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s", tt.metric, tt.gran), func(t *testing.T) {
			t.Parallel()
			resp, err := e.svc.GetTimeSeries(tenancy.NewContext(t.Context(), "acme"),
				metricReq(tt.metric, tt.gran, tt.start, tt.end))
			require.NoError(t, err)
			require.Equal(t, tt.metric, resp.GetMetric())
			require.Equal(t, tt.want, pts(resp.GetSeries()[0].GetPoints()))
			if tt.metric == queryv1.Metric_METRIC_UNIQUE_USERS {
				require.Equal(t, postgres.UniqueUsersRelativeError, resp.GetUniqueUsersRelativeError())
			} else {
				require.Zero(t, resp.GetUniqueUsersRelativeError(), "exact metrics state no error")
			}
		})
	}

	t.Run("another tenant sees none of it", func(t *testing.T) {
		t.Parallel()
		resp, err := e.svc.GetTimeSeries(tenancy.NewContext(t.Context(), "globex"),
			metricReq(queryv1.Metric_METRIC_UNIQUE_USERS, queryv1.Granularity_GRANULARITY_DAY, day, day.Add(24*time.Hour)))
		require.NoError(t, err)
		require.Equal(t, []pt{{day, 0}}, pts(resp.GetSeries()[0].GetPoints()))
	})
}

// recordingStore records the reads the service asks for.
type recordingStore struct {
	mu    sync.Mutex
	reads []storeRead
}

type storeRead struct {
	metric, granularity string
	start, end          time.Time
}

func (s *recordingStore) TimeSeries(_ context.Context, _ tenancy.ID, _, metric string,
	start, end time.Time, granularity string) ([]postgres.Point, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, storeRead{metric, granularity, start, end})
	return nil, nil
}

func (s *recordingStore) Watermark(context.Context, string, string) (time.Time, error) {
	return time.Time{}, nil
}

// TestGetTimeSeriesReadsWholeBuckets: the service asks the store for ranges
// aligned to the granularity, in UTC, which is what lets the store read one
// hourly or daily rollup row per point instead of every minute.
func TestGetTimeSeriesReadsWholeBuckets(t *testing.T) {
	t.Parallel()
	store := &recordingStore{}
	svc, err := query.New(query.Config{}, store, nil, nil)
	require.NoError(t, err)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	start := time.Date(2026, 3, 14, 9, 47, 12, 0, zone) // 04:17:12 UTC
	end := start.Add(50 * time.Hour)
	tests := []struct {
		metric                queryv1.Metric
		gran                  queryv1.Granularity
		wantMetric, wantGran  string
		wantStart, wantEndUTC time.Time
	}{
		{queryv1.Metric_METRIC_UNIQUE_USERS, queryv1.Granularity_GRANULARITY_DAY, postgres.MetricUniqueUsers,
			postgres.GranularityDay, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 17, 0, 0, 0, 0, time.UTC)},
		{queryv1.Metric_METRIC_SUM, queryv1.Granularity_GRANULARITY_HOUR, postgres.MetricSum,
			postgres.GranularityHour, time.Date(2026, 3, 14, 4, 0, 0, 0, time.UTC), time.Date(2026, 3, 16, 7, 0, 0, 0, time.UTC)},
		{queryv1.Metric_METRIC_AVG, queryv1.Granularity_GRANULARITY_MINUTE, postgres.MetricAvg,
			postgres.GranularityMinute, time.Date(2026, 3, 14, 4, 17, 0, 0, time.UTC), time.Date(2026, 3, 16, 6, 18, 0, 0, time.UTC)},
		{queryv1.Metric_METRIC_MIN, queryv1.Granularity_GRANULARITY_DAY, postgres.MetricMin,
			postgres.GranularityDay, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 17, 0, 0, 0, 0, time.UTC)},
		{queryv1.Metric_METRIC_MAX, queryv1.Granularity_GRANULARITY_DAY, postgres.MetricMax,
			postgres.GranularityDay, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 17, 0, 0, 0, 0, time.UTC)},
		{queryv1.Metric_METRIC_COUNT, queryv1.Granularity_GRANULARITY_HOUR, postgres.MetricCount,
			postgres.GranularityHour, time.Date(2026, 3, 14, 4, 0, 0, 0, time.UTC), time.Date(2026, 3, 16, 7, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		store.reads = nil
		_, err := svc.GetTimeSeries(tenancy.NewContext(t.Context(), "acme"), &queryv1.GetTimeSeriesRequest{
			EventType: "purchase", Metric: tt.metric, Granularity: tt.gran,
			Start: timestamppb.New(start), End: timestamppb.New(end),
		})
		require.NoError(t, err)
		require.Equal(t, []storeRead{{tt.wantMetric, tt.wantGran, tt.wantStart, tt.wantEndUTC}}, store.reads,
			"%s %s", tt.metric, tt.gran)
		require.Equal(t, time.UTC, store.reads[0].start.Location())
	}
}

func TestWatchUniqueUsersStatesError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastPoll)
	ts := startServer(t, e.svc)
	e.applyValues(t, valueEvent{t0, nil, "ann"}, valueEvent{t0.Add(time.Second), nil, "bob"})
	end := t0.Add(2 * time.Minute)
	req := watchReq("purchase", t0, &end)
	req.Metric = queryv1.Metric_METRIC_UNIQUE_USERS
	stream, _ := ts.watch(t, "acme", req)
	snapshot := recvPoints(t, stream)
	require.True(t, snapshot.GetSnapshot())
	require.Equal(t, []pt{{t0, 2}, {t0.Add(time.Minute), 0}}, pts(snapshot.GetPoints()))
	require.Equal(t, postgres.UniqueUsersRelativeError, snapshot.GetUniqueUsersRelativeError())

	e.applyValues(t, valueEvent{t0.Add(time.Minute), nil, "ann"})
	change := recvPoints(t, stream)
	require.Equal(t, []pt{{t0.Add(time.Minute), 1}}, pts(change.GetPoints()))
}
