package query

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// granularity is a bucket width the contract offers.
type granularity struct {
	proto queryv1.Granularity
	// store is the postgres.Granularity* name, also used in messages.
	store string
	// step is the width of a bucket. Every step divides a UTC day, so
	// truncating a UTC instant to it aligns to the UTC calendar.
	step time.Duration
}

// granularityOf returns the granularity of g, and false for UNSPECIFIED and
// values the contract does not define.
func granularityOf(g queryv1.Granularity) (granularity, bool) {
	switch g {
	case queryv1.Granularity_GRANULARITY_MINUTE:
		return granularity{g, postgres.GranularityMinute, time.Minute}, true
	case queryv1.Granularity_GRANULARITY_HOUR:
		return granularity{g, postgres.GranularityHour, time.Hour}, true
	case queryv1.Granularity_GRANULARITY_DAY:
		return granularity{g, postgres.GranularityDay, 24 * time.Hour}, true
	default:
		return granularity{}, false
	}
}

// metric is a metric the contract offers.
type metric struct {
	proto queryv1.Metric
	// store is the postgres.Metric* name.
	store string
}

// metricOf returns the metric of m, and false for UNSPECIFIED and values the
// contract does not define.
func metricOf(m queryv1.Metric) (metric, bool) {
	switch m {
	case queryv1.Metric_METRIC_COUNT:
		return metric{m, postgres.MetricCount}, true
	case queryv1.Metric_METRIC_SUM:
		return metric{m, postgres.MetricSum}, true
	case queryv1.Metric_METRIC_AVG:
		return metric{m, postgres.MetricAvg}, true
	case queryv1.Metric_METRIC_MIN:
		return metric{m, postgres.MetricMin}, true
	case queryv1.Metric_METRIC_MAX:
		return metric{m, postgres.MetricMax}, true
	case queryv1.Metric_METRIC_UNIQUE_USERS:
		return metric{m, postgres.MetricUniqueUsers}, true
	default:
		return metric{}, false
	}
}

// relativeError is the relative standard error of m's points: that of the
// unique-user sketches for METRIC_UNIQUE_USERS, 0 for the exact metrics.
func (m metric) relativeError() float64 {
	if m.proto == queryv1.Metric_METRIC_UNIQUE_USERS {
		return postgres.UniqueUsersRelativeError
	}
	return 0
}

// floor rounds t down to the start of its bucket, in UTC. time.Truncate works
// on absolute time since year 1, whose days have exactly 86400 seconds in Go,
// so whole days truncate to UTC midnight.
func (g granularity) floor(t time.Time) time.Time {
	return t.UTC().Truncate(g.step)
}

// ceil rounds t up to a bucket boundary, in UTC.
func (g granularity) ceil(t time.Time) time.Time {
	f := g.floor(t)
	if f.Before(t) {
		f = f.Add(g.step)
	}
	return f
}

// window is a range of whole buckets: [start, end), both aligned, start <= end.
type window struct {
	gran       granularity
	start, end time.Time
}

// seconds is the length of w in seconds. Unix seconds do not overflow for any
// valid timestamp, unlike a time.Duration, which ends at 292 years.
func (w window) seconds() int64 {
	return w.end.Unix() - w.start.Unix()
}

// buckets is the number of buckets of w.
func (w window) buckets() int {
	return int(w.seconds() / w.stepSeconds())
}

// stepSeconds is the width of a bucket of w in seconds.
func (w window) stepSeconds() int64 {
	return int64(w.gran.step / time.Second)
}

// bucketIndex returns the index of the bucket starting at t, and false when t
// is not the start of a bucket of w.
func (w window) bucketIndex(t time.Time) (int, bool) {
	if t.Before(w.start) || !t.Before(w.end) || t.Nanosecond() != 0 {
		return 0, false
	}
	off := t.Unix() - w.start.Unix()
	if off%w.stepSeconds() != 0 {
		return 0, false
	}
	return int(off / w.stepSeconds()), true
}

// bucketStart returns the start of bucket i of w.
func (w window) bucketStart(i int) time.Time {
	return time.Unix(w.start.Unix()+int64(i)*w.stepSeconds(), 0).UTC()
}

// overLimit describes how w breaks the configured limits, or returns "".
func (s *Service) overLimit(w window) string {
	if maxSec := int64(s.cfg.MaxRange / time.Second); w.seconds() > maxSec {
		return fmt.Sprintf("range spans %s, limit %s", span(w.seconds()), span(maxSec))
	}
	if n := w.buckets(); n > s.cfg.MaxPoints {
		return fmt.Sprintf("range has %d %s buckets, limit %d; narrow the range or use a coarser granularity",
			n, w.gran.store, s.cfg.MaxPoints)
	}
	return ""
}

// span formats a number of seconds in the largest unit that divides it.
func span(sec int64) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case sec%86400 == 0:
		return unit(sec/86400, "day")
	case sec%3600 == 0:
		return unit(sec/3600, "hour")
	case sec%60 == 0:
		return unit(sec/60, "minute")
	default:
		return unit(sec, "second")
	}
}

// seriesRequest is the part of GetTimeSeriesRequest and
// WatchTimeSeriesRequest that selects a series.
type seriesRequest interface {
	GetEventType() string
	GetMetric() queryv1.Metric
	GetGranularity() queryv1.Granularity
	GetStart() *timestamppb.Timestamp
}

// series is a checked series selection: event type, metric and granularity,
// and the aligned start of its range.
type series struct {
	eventType string
	metric    metric
	gran      granularity
	start     time.Time
}

// parseSeries checks the fields of req that the proto's validation rules
// also check, because a handler must not rely on them for safety: a metric
// and granularity it implements, a valid start. It does not repeat the
// event-type pattern: the store binds the type as a parameter.
func parseSeries(req seriesRequest) (series, error) {
	m, ok := metricOf(req.GetMetric())
	if !ok {
		return series{}, invalidArgument("metric",
			"must be METRIC_COUNT, METRIC_SUM, METRIC_AVG, METRIC_MIN, METRIC_MAX or METRIC_UNIQUE_USERS")
	}
	gran, ok := granularityOf(req.GetGranularity())
	if !ok {
		return series{}, invalidArgument("granularity", "must be GRANULARITY_MINUTE, GRANULARITY_HOUR or GRANULARITY_DAY")
	}
	if req.GetEventType() == "" {
		return series{}, invalidArgument("event_type", "required")
	}
	start, err := timestamp("start", req.GetStart())
	if err != nil {
		return series{}, err
	}
	return series{eventType: req.GetEventType(), metric: m, gran: gran, start: gran.floor(start)}, nil
}

// timestamp converts a required timestamp field, or returns INVALID_ARGUMENT
// naming it.
func timestamp(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, invalidArgument(field, "required")
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalidArgument(field, "not a valid timestamp (years 1-9999)")
	}
	return ts.AsTime(), nil
}

// window returns the range of s that ends at end (unaligned), never shorter
// than empty.
func (s series) window(end time.Time) window {
	w := window{gran: s.gran, start: s.start, end: s.gran.ceil(end)}
	if w.end.Before(w.start) {
		w.end = w.start
	}
	return w
}

// read returns the value of sel's metric in every bucket of w, zero where no
// event fell, with the time each bucket last changed (zero for empty ones),
// and observes the read's duration in obs.
func (s *Service) read(ctx context.Context, obs prometheus.Observer, tenant tenancy.ID, sel series, w window) ([]float64, []time.Time, error) {
	values := make([]float64, w.buckets())
	updated := make([]time.Time, len(values))
	if len(values) == 0 {
		return values, updated, nil
	}
	started := time.Now()
	points, err := s.store.TimeSeries(ctx, tenant, sel.eventType, sel.metric.store, w.start, w.end, w.gran.store)
	obs.Observe(time.Since(started).Seconds())
	if err != nil {
		return nil, nil, err
	}
	for _, p := range points {
		// The store returns aligned buckets inside the range; anything else
		// would be a store bug, and must not index out of range here.
		if i, ok := w.bucketIndex(p.Time); ok && i < len(values) {
			values[i], updated[i] = p.Value, p.Updated
		}
	}
	return values, updated, nil
}

// point returns the point of bucket i of w, which last changed at updated
// (zero for an empty bucket).
func (w window) point(i int, value float64, updated time.Time) *queryv1.Point {
	p := &queryv1.Point{
		Time:  timestamppb.New(w.bucketStart(i)),
		Value: value,
	}
	if !updated.IsZero() {
		p.UpdatedTime = timestamppb.New(updated)
	}
	return p
}

// watermark returns the watermark of the rollups and the time before which
// tenant's buckets are final, both nil while no watermark is known.
func (s *Service) watermark(ctx context.Context, tenant tenancy.ID) (watermark, finalBefore *timestamppb.Timestamp, err error) {
	w, err := s.store.Watermark(ctx, eventlog.RollupGroup, eventlog.Topic)
	if err != nil || w.IsZero() {
		return nil, nil, err
	}
	watermark = timestamppb.New(w)
	if s.cfg.LateWindow != nil {
		finalBefore = timestamppb.New(w.Add(-s.cfg.LateWindow(tenant)))
	}
	return watermark, finalBefore, nil
}

// GetTimeSeries returns the requested metric of one event type per bucket of
// the requested range, zero-filled, as one ungrouped series. For
// METRIC_UNIQUE_USERS the response states the estimates' relative standard
// error.
func (s *Service) GetTimeSeries(ctx context.Context, req *queryv1.GetTimeSeriesRequest) (*queryv1.GetTimeSeriesResponse, error) {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("query: get time series: %w", err)
	}
	sel, err := parseSeries(req)
	if err != nil {
		return nil, err
	}
	end, err := timestamp("end", req.GetEnd())
	if err != nil {
		return nil, err
	}
	if !end.After(req.GetStart().AsTime()) {
		return nil, invalidArgument("end", "must be after start")
	}
	w := sel.window(end)
	if msg := s.overLimit(w); msg != "" {
		return nil, invalidArgument("end", msg)
	}

	// The watermark is read first: every event it covers is then in the
	// rollups the series is read from.
	watermark, finalBefore, err := s.watermark(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("query: get time series: %w", err)
	}
	values, updated, err := s.read(ctx, s.readSeconds.WithLabelValues(rpcGetTimeSeries), tenant, sel, w)
	if err != nil {
		return nil, fmt.Errorf("query: get time series: %w", err)
	}
	points := make([]*queryv1.Point, len(values))
	for i, v := range values {
		points[i] = w.point(i, v, updated[i])
	}
	return &queryv1.GetTimeSeriesResponse{
		Series:                   []*queryv1.Series{{Group: "", Points: points}},
		Metric:                   sel.metric.proto,
		Granularity:              sel.gran.proto,
		Start:                    timestamppb.New(w.start),
		End:                      timestamppb.New(w.end),
		UniqueUsersRelativeError: sel.metric.relativeError(),
		Watermark:                watermark,
		FinalBefore:              finalBefore,
	}, nil
}
