package query_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/tenancy"
)

// pt is a point in a form require.Equal prints readably.
type pt struct {
	At    time.Time
	Value float64
}

func pts(points []*queryv1.Point) []pt {
	out := make([]pt, 0, len(points))
	for _, p := range points {
		out = append(out, pt{p.GetTime().AsTime(), p.GetValue()})
	}
	return out
}

func countReq(typ string, g queryv1.Granularity, start, end time.Time) *queryv1.GetTimeSeriesRequest {
	return &queryv1.GetTimeSeriesRequest{
		EventType:   typ,
		Metric:      queryv1.Metric_METRIC_COUNT,
		Granularity: g,
		Start:       timestamppb.New(start),
		End:         timestamppb.New(end),
	}
}

func TestGetTimeSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{})
	const acme = tenancy.ID("acme")
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	e.apply(t,
		event{acme, "signup", t0.Add(10 * time.Second)},
		event{acme, "signup", t0.Add(50 * time.Second)},
		event{acme, "signup", t0.Add(2*time.Minute + 5*time.Second)},
		event{acme, "signup", t0.Add(time.Hour)},
		event{acme, "signup", day.Add(25 * time.Hour)}, // 2026-03-15T01:00
		event{acme, "login", t0.Add(10 * time.Second)}, // another type
	)

	tests := []struct {
		name               string
		req                *queryv1.GetTimeSeriesRequest
		wantStart, wantEnd time.Time
		want               []pt
	}{
		{
			name: "minutes, unaligned bounds rounded outwards, zero-filled",
			req: countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE,
				t0.Add(30*time.Second), t0.Add(3*time.Minute+time.Second)),
			wantStart: t0,
			wantEnd:   t0.Add(4 * time.Minute),
			want: []pt{
				{t0, 2}, {t0.Add(time.Minute), 0}, {t0.Add(2 * time.Minute), 1}, {t0.Add(3 * time.Minute), 0},
			},
		},
		{
			name: "hours, aligned end kept",
			req: countReq("signup", queryv1.Granularity_GRANULARITY_HOUR,
				day.Add(15*time.Hour+30*time.Minute), day.Add(18*time.Hour)),
			wantStart: day.Add(15 * time.Hour),
			wantEnd:   day.Add(18 * time.Hour),
			want: []pt{
				{day.Add(15 * time.Hour), 3}, {day.Add(16 * time.Hour), 1}, {day.Add(17 * time.Hour), 0},
			},
		},
		{
			name: "days are UTC days",
			req: countReq("signup", queryv1.Granularity_GRANULARITY_DAY,
				day.Add(12*time.Hour), day.Add(24*time.Hour+time.Second)),
			wantStart: day,
			wantEnd:   day.Add(48 * time.Hour),
			want:      []pt{{day, 4}, {day.Add(24 * time.Hour), 1}},
		},
		{
			name: "bounds in another zone mean the same instants",
			req: countReq("signup", queryv1.Granularity_GRANULARITY_DAY,
				day.Add(12*time.Hour).In(time.FixedZone("UTC-11", -11*3600)),
				day.Add(36*time.Hour).In(time.FixedZone("UTC+14", 14*3600))),
			wantStart: day,
			wantEnd:   day.Add(48 * time.Hour),
			want:      []pt{{day, 4}, {day.Add(24 * time.Hour), 1}},
		},
		{
			name: "another event type counts apart",
			req: countReq("login", queryv1.Granularity_GRANULARITY_MINUTE,
				t0, t0.Add(2*time.Minute)),
			wantStart: t0,
			wantEnd:   t0.Add(2 * time.Minute),
			want:      []pt{{t0, 1}, {t0.Add(time.Minute), 0}},
		},
		{
			name: "no events is all zeros",
			req: countReq("purchase", queryv1.Granularity_GRANULARITY_HOUR,
				day, day.Add(3*time.Hour)),
			wantStart: day,
			wantEnd:   day.Add(3 * time.Hour),
			want:      []pt{{day, 0}, {day.Add(time.Hour), 0}, {day.Add(2 * time.Hour), 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := e.svc.GetTimeSeries(tenancy.NewContext(t.Context(), acme), tt.req)
			require.NoError(t, err)
			require.Len(t, resp.GetSeries(), 1)
			require.Empty(t, resp.GetSeries()[0].GetGroup())
			require.Equal(t, tt.want, pts(resp.GetSeries()[0].GetPoints()))
			require.Equal(t, queryv1.Metric_METRIC_COUNT, resp.GetMetric())
			require.Equal(t, tt.req.GetGranularity(), resp.GetGranularity())
			require.Equal(t, tt.wantStart, resp.GetStart().AsTime())
			require.Equal(t, tt.wantEnd, resp.GetEnd().AsTime())
		})
	}
}

func TestGetTimeSeriesTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{})
	// Same type, same timestamps, different counts.
	e.apply(t,
		event{"acme", "signup", t0},
		event{"acme", "signup", t0},
		event{"acme", "signup", t0.Add(time.Minute)},
		event{"globex", "signup", t0},
		event{"globex", "signup", t0.Add(2 * time.Minute)},
	)
	tests := []struct {
		tenant tenancy.ID
		want   []float64
	}{
		{"acme", []float64{2, 1, 0}},
		{"globex", []float64{1, 0, 1}},
		{"initech", []float64{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.tenant.String(), func(t *testing.T) {
			t.Parallel()
			resp, err := e.svc.GetTimeSeries(tenancy.NewContext(t.Context(), tt.tenant),
				countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(3*time.Minute)))
			require.NoError(t, err)
			var got []float64
			for _, p := range resp.GetSeries()[0].GetPoints() {
				got = append(got, p.GetValue())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestGetTimeSeriesRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{})
	ctx := tenancy.NewContext(t.Context(), "acme")
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	valid := func(mod func(r *queryv1.GetTimeSeriesRequest)) *queryv1.GetTimeSeriesRequest {
		r := countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(time.Hour))
		mod(r)
		return r
	}
	tests := []struct {
		name  string
		req   *queryv1.GetTimeSeriesRequest
		field string
		want  string // in the violation's description
	}{
		{
			name:  "too many minute buckets",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(10_001*time.Minute)),
			field: "end",
			want:  "range has 10001 minute buckets, limit 10000",
		},
		{
			name:  "too many buckets after rounding",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0.Add(59*time.Second), t0.Add(10_000*time.Minute+time.Second)),
			field: "end",
			want:  "range has 10001 minute buckets, limit 10000",
		},
		{
			name:  "range too long",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_DAY, day, day.Add(401*24*time.Hour)),
			field: "end",
			want:  "range spans 401 days, limit 400 days",
		},
		{
			name:  "absurd range",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_DAY, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)),
			field: "end",
			want:  "limit 400 days",
		},
		{
			name:  "metric unspecified",
			req:   valid(func(r *queryv1.GetTimeSeriesRequest) { r.Metric = queryv1.Metric_METRIC_UNSPECIFIED }),
			field: "metric",
			want:  "METRIC_COUNT",
		},
		{
			name:  "granularity undefined",
			req:   valid(func(r *queryv1.GetTimeSeriesRequest) { r.Granularity = 9 }),
			field: "granularity",
			want:  "GRANULARITY_MINUTE",
		},
		{
			name:  "no start",
			req:   valid(func(r *queryv1.GetTimeSeriesRequest) { r.Start = nil }),
			field: "start",
			want:  "required",
		},
		{
			name:  "invalid end",
			req:   valid(func(r *queryv1.GetTimeSeriesRequest) { r.End = &timestamppb.Timestamp{Seconds: 1 << 40} }),
			field: "end",
			want:  "not a valid timestamp",
		},
		{
			name:  "end before start",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(-time.Minute)),
			field: "end",
			want:  "after start",
		},
		{
			name:  "end equals start",
			req:   countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0),
			field: "end",
			want:  "after start",
		},
		{
			name:  "no event type",
			req:   valid(func(r *queryv1.GetTimeSeriesRequest) { r.EventType = "" }),
			field: "event_type",
			want:  "required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.svc.GetTimeSeries(ctx, tt.req)
			requireInvalidArgument(t, err, tt.field, tt.want)
		})
	}

	t.Run("at the limits", func(t *testing.T) {
		t.Parallel()
		for _, req := range []*queryv1.GetTimeSeriesRequest{
			countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(10_000*time.Minute)),
			countReq("signup", queryv1.Granularity_GRANULARITY_DAY, day, day.Add(400*24*time.Hour)),
		} {
			resp, err := e.svc.GetTimeSeries(ctx, req)
			require.NoError(t, err)
			require.NotEmpty(t, resp.GetSeries()[0].GetPoints())
		}
	})
}

func TestConfiguredLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{MaxPoints: 24, MaxRange: 48 * time.Hour})
	ctx := tenancy.NewContext(t.Context(), "acme")

	_, err := e.svc.GetTimeSeries(ctx, countReq("signup", queryv1.Granularity_GRANULARITY_HOUR, t0, t0.Add(24*time.Hour)))
	requireInvalidArgument(t, err, "end", "range has 25 hour buckets, limit 24")

	_, err = e.svc.GetTimeSeries(ctx, countReq("signup", queryv1.Granularity_GRANULARITY_DAY, t0, t0.Add(48*time.Hour)))
	requireInvalidArgument(t, err, "end", "range spans 3 days, limit 2 days")

	_, err = e.svc.GetTimeSeries(ctx, countReq("signup", queryv1.Granularity_GRANULARITY_HOUR, t0, t0.Add(23*time.Hour)))
	require.NoError(t, err)
}

func TestNoTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, query.Config{})
	_, err := e.svc.GetTimeSeries(t.Context(),
		countReq("signup", queryv1.Granularity_GRANULARITY_MINUTE, t0, t0.Add(time.Minute)))
	require.ErrorIs(t, err, tenancy.ErrNoTenant)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  query.Config
		want []string
	}{
		{name: "zero is valid", cfg: query.Config{}},
		{name: "every problem", cfg: query.Config{
			MaxPoints: -1, MaxRange: time.Second, WatchPollInterval: -1, WatchHeartbeat: -1,
		}, want: []string{"MaxPoints", "MaxRange", "WatchPollInterval", "WatchHeartbeat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			_, err = query.New(tt.cfg, nil, nil, nil)
			require.Error(t, err)
		})
	}
}
