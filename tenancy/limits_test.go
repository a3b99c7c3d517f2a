package tenancy

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

func TestOverridesApplyAndReload(t *testing.T) {
	t.Parallel()
	src := &fakeSource{overrides: map[ID]LimitOverrides{
		"big":    {EventsPerSecond: ptr(50000.0), EventsBurst: ptr(int64(100000)), KafkaShards: ptr(8)},
		"broken": {MaxBatchEvents: ptr(0)}, // invalid: ignored, defaults kept
		"quota":  {MonthlyEventQuota: ptr(int64(1_000_000)), MonthlyEventQuotaSoft: ptr(int64(800_000)), TimestampPastWindow: ptr(time.Hour)},
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
