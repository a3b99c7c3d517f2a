package query_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/eventlog"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/tenancy"
)

// TestGetTimeSeriesWatermarkAndLateEvents: a response carries the rollup
// consumers' watermark and, from the tenant's late window, the time before
// which its buckets are final; every non-empty point says when it last
// changed, and a late event changes exactly its own bucket's point.
func TestGetTimeSeriesWatermarkAndLateEvents(t *testing.T) {
	t.Parallel()
	windows := map[tenancy.ID]time.Duration{"acme": time.Hour, "globex": 48 * time.Hour}
	e := newEnv(t, query.Config{LateWindow: func(id tenancy.ID) time.Duration { return windows[id] }})
	const acme = tenancy.ID("acme")
	req := countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(3*time.Minute))
	get := func(tenant tenancy.ID) *queryv1.GetTimeSeriesResponse {
		t.Helper()
		resp, err := e.svc.GetTimeSeries(tenancy.NewContext(t.Context(), tenant), req)
		require.NoError(t, err)
		return resp
	}

	e.apply(t, event{acme, "signup", t0.Add(10 * time.Second)}, event{acme, "signup", t0.Add(2 * time.Minute)})
	resp := get(acme)
	require.Nil(t, resp.GetWatermark(), "no consumer has proved a watermark yet")
	require.Nil(t, resp.GetFinalBefore())
	points := resp.GetSeries()[0].GetPoints()
	require.Equal(t, []pt{{t0, 1}, {t0.Add(time.Minute), 0}, {t0.Add(2 * time.Minute), 1}}, pts(points))
	require.NotNil(t, points[0].GetUpdatedTime())
	require.Nil(t, points[1].GetUpdatedTime(), "an empty bucket never changed")
	require.NotNil(t, points[2].GetUpdatedTime())
	first := points[0].GetUpdatedTime().AsTime()

	// The consumers prove a watermark for both partitions.
	w := time.Date(2026, 3, 14, 18, 0, 0, 0, time.UTC)
	_, err := e.db.ClaimPartitions(t.Context(), eventlog.RollupGroup, eventlog.Topic, 1, []int32{0, 1})
	require.NoError(t, err)
	require.NoError(t, e.db.AdvanceWatermarks(t.Context(), eventlog.RollupGroup, eventlog.Topic, 1,
		map[int32]time.Time{0: w, 1: w.Add(time.Minute)}))
	resp = get(acme)
	require.Equal(t, w, resp.GetWatermark().AsTime(), "the earliest partition's")
	require.Equal(t, w.Add(-time.Hour), resp.GetFinalBefore().AsTime(), "acme accepts events up to an hour old")
	require.Equal(t, w.Add(-48*time.Hour), get("globex").GetFinalBefore().AsTime(), "per tenant")

	// A late event changes its bucket's value and change time, and nothing
	// else.
	time.Sleep(time.Millisecond) // updated_at has microseconds
	e.apply(t, event{acme, "signup", t0.Add(30 * time.Second)})
	late := get(acme).GetSeries()[0].GetPoints()
	require.Equal(t, []pt{{t0, 2}, {t0.Add(time.Minute), 0}, {t0.Add(2 * time.Minute), 1}}, pts(late))
	require.True(t, late[0].GetUpdatedTime().AsTime().After(first))
	require.Equal(t, points[2].GetUpdatedTime().AsTime(), late[2].GetUpdatedTime().AsTime())
}
