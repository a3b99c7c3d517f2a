package tenancy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

type fakeSource struct {
	overrides map[ID]LimitOverrides
	err       error
}

func (f *fakeSource) LoadLimitOverrides(context.Context) (map[ID]LimitOverrides, error) {
	return f.overrides, f.err
}

func ptr[T any](v T) *T { return &v }

func TestDefaultLimitsAreValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultLimits().Validate())
	bad := DefaultLimits()
	bad.EventsPerSecond, bad.MaxBatchEvents, bad.KafkaShards = 0, 20000, 0
	err := bad.Validate()
	require.ErrorContains(t, err, "events per second")
	require.ErrorContains(t, err, "max batch events")
	require.ErrorContains(t, err, "kafka shards")
}

func TestRetentionLimits(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	tests := []struct {
		name            string
		pastWindow      time.Duration
		raw, rollup     time.Duration
		wantErrContains []string
	}{
		{name: "defaults", pastWindow: 7 * day, raw: 90 * day, rollup: 730 * day},
		{name: "raw exactly past window plus margin", pastWindow: 7 * day, raw: 8 * day, rollup: 8 * day},
		{name: "raw one nanosecond short of the margin", pastWindow: 7 * day, raw: 8*day - 1, rollup: 30 * day,
			wantErrContains: []string{"raw retention must be at least the timestamp past window (168h0m0s) + 24h0m0s"}},
		{name: "raw shorter than the past window", pastWindow: 30 * day, raw: 10 * day, rollup: 30 * day,
			wantErrContains: []string{"raw retention must be at least"}},
		{name: "negative raw does not wrap around", pastWindow: time.Hour, raw: math.MinInt64, rollup: day,
			wantErrContains: []string{"raw retention must be at least"}},
		{name: "largest", pastWindow: 7 * day, raw: MaxRawRetention, rollup: MaxRollupRetention},
		{name: "raw too long", pastWindow: 7 * day, raw: MaxRawRetention + 1, rollup: MaxRollupRetention,
			wantErrContains: []string{"raw retention must be at most 87660h0m0s"}},
		{name: "rollup shorter than raw", pastWindow: 7 * day, raw: 90 * day, rollup: 89 * day,
			wantErrContains: []string{"rollup retention must be at least the raw retention (2160h0m0s)"}},
		{name: "rollup too long", pastWindow: 7 * day, raw: 90 * day, rollup: MaxRollupRetention + time.Second,
			wantErrContains: []string{"rollup retention must be at most 175320h0m0s"}},
		{name: "every problem at once", pastWindow: 7 * day, raw: MaxRawRetention + 1, rollup: day,
			wantErrContains: []string{"raw retention must be at most", "rollup retention must be at least"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := DefaultLimits()
			l.TimestampPastWindow, l.RawRetention, l.RollupRetention = tt.pastWindow, tt.raw, tt.rollup
			err := l.Validate()
			if len(tt.wantErrContains) == 0 {
				require.NoError(t, err)
				return
			}
			for _, want := range tt.wantErrContains {
				require.ErrorContains(t, err, want)
			}
		})
	}
	require.Equal(t, 90*day, DefaultLimits().RawRetention)
	require.Equal(t, 2*365*day+12*time.Hour, DefaultLimits().RollupRetention, "two years of 365.25 days")
}

func TestOverridesApplyAndReload(t *testing.T) {
	t.Parallel()
	src := &fakeSource{overrides: map[ID]LimitOverrides{
		"big":    {EventsPerSecond: ptr(50000.0), EventsBurst: ptr(int64(100000)), KafkaShards: ptr(8)},
		"broken": {MaxBatchEvents: ptr(0)}, // invalid: ignored, defaults kept
		"quota":  {MonthlyEventQuota: ptr(int64(1_000_000)), MonthlyEventQuotaSoft: ptr(int64(800_000)), TimestampPastWindow: ptr(time.Hour)},
		"keeper": {RawRetention: ptr(365 * 24 * time.Hour), RollupRetention: ptr(5 * 365 * 24 * time.Hour)},
		// A raw retention longer than the default rollup retention is only valid with a longer
		// rollup retention too.
		"lopsided": {RawRetention: ptr(3 * 365 * 24 * time.Hour)},
	}}
	o, err := NewOverrides(OverridesConfig{Defaults: DefaultLimits()}, src, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	require.Equal(t, DefaultLimits(), o.For("big"), "before the first load every tenant has the defaults")

	require.NoError(t, o.Reload(t.Context()))
	rate, burst := o.EventRate("big")
	require.Equal(t, 50000.0, rate)
	require.EqualValues(t, 100000, burst)
	require.Equal(t, 8, o.KafkaShards("big"))
	require.Equal(t, DefaultLimits().RequestsPerSecond, o.RequestRate("big"), "fields not overridden keep the default")
	require.Equal(t, DefaultLimits(), o.For("broken"))
	hard, soft := o.MonthlyQuota("quota")
	require.EqualValues(t, 1_000_000, hard)
	require.EqualValues(t, 800_000, soft)
	past, future := o.TimestampWindow("quota")
	require.Equal(t, time.Hour, past)
	require.Equal(t, DefaultLimits().TimestampFutureWindow, future)
	require.Equal(t, DefaultLimits(), o.For("unknown"))
	raw, rollup := o.Retention("keeper")
	require.Equal(t, 365*24*time.Hour, raw)
	require.Equal(t, 5*365*24*time.Hour, rollup)
	require.Equal(t, DefaultLimits(), o.For("lopsided"), "invalid overrides are ignored")

	// A failed reload keeps the last good table.
	src.err = errors.New("database down")
	require.Error(t, o.Reload(t.Context()))
	require.Equal(t, 8, o.KafkaShards("big"))
}

func TestMonthPeriod(t *testing.T) {
	t.Parallel()
	start, end := MonthPeriod(time.Date(2026, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -5*3600)))
	require.Equal(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), start, "the instant is in January in UTC")
	require.Equal(t, time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), end)
}
