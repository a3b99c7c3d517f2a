package rollup

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per reported problem
	}{
		{name: "minimal", cfg: Config{Brokers: []string{"127.0.0.1:9092"}}},
		{
			name: "everything set",
			cfg: Config{
				Brokers: []string{"a:9092", "b:9092"}, Group: "g", MaxPollRecords: 10, MaxBatchEvents: 10,
				SessionTimeout: time.Second, RebalanceTimeout: time.Second, HeartbeatInterval: 300 * time.Millisecond,
				RetryBackoff: time.Millisecond, LagInterval: time.Second, ApplyLanes: 4, WatermarkInterval: time.Second,
				Notifier: nopNotifier{}, AfterApply: func() {},
			},
		},
		{name: "no brokers", cfg: Config{}, want: []string{"at least one Kafka broker"}},
		{
			name: "every problem at once",
			cfg: Config{
				Brokers: []string{"a:9092", ""}, MaxPollRecords: -1, MaxBatchEvents: -1,
				SessionTimeout: -1, RebalanceTimeout: -1, HeartbeatInterval: -1, RetryBackoff: -1, LagInterval: -1,
				WatermarkInterval: -1, ApplyLanes: -1, SketchInterval: -1,
			},
			want: []string{
				"broker 1 is empty", "max poll records", "max batch events", "session timeout", "rebalance timeout",
				"heartbeat interval is", "retry backoff", "lag interval", "watermark interval", "apply lanes", "sketch interval",
			},
		},
		{
			name: "heartbeat not shorter than the session timeout",
			cfg:  Config{Brokers: []string{"a:9092"}, SessionTimeout: time.Second, HeartbeatInterval: time.Second},
			want: []string{"heartbeat interval 1s must be shorter than the session timeout 1s"},
		},
		{
			name: "heartbeat not shorter than the default session timeout",
			cfg:  Config{Brokers: []string{"a:9092"}, HeartbeatInterval: time.Minute},
			want: []string{"must be shorter than the session timeout 45s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), len(tt.want))
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got := Config{Brokers: []string{"a:9092"}}.withDefaults()
	require.Equal(t, DefaultGroup, got.Group)
	require.Equal(t, DefaultMaxPollRecords, got.MaxPollRecords)
	require.Equal(t, DefaultMaxBatchEvents, got.MaxBatchEvents)
	require.Equal(t, DefaultRetryBackoff, got.RetryBackoff)
	require.Equal(t, DefaultLagInterval, got.LagInterval)
	require.Equal(t, DefaultWatermarkInterval, got.WatermarkInterval)
	require.Equal(t, DefaultApplyLanes, got.ApplyLanes)
	require.Equal(t, DefaultSketchInterval, got.SketchInterval)
	require.Zero(t, got.HeartbeatInterval, "the Kafka client's default")

	short := Config{Brokers: []string{"a:9092"}, SessionTimeout: 1500 * time.Millisecond}.withDefaults()
	require.Equal(t, 500*time.Millisecond, short.HeartbeatInterval, "a third of a short session timeout")
	long := Config{Brokers: []string{"a:9092"}, SessionTimeout: time.Minute}.withDefaults()
	require.Zero(t, long.HeartbeatInterval, "the client's 3 s is short enough")
	set := Config{Brokers: []string{"a:9092"}, SessionTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond}.withDefaults()
	require.Equal(t, 100*time.Millisecond, set.HeartbeatInterval)
}

type nopNotifier struct{}

func (nopNotifier) Notify(context.Context, []postgres.ChangedBucket) error { return nil }

func TestConfigBackoff(t *testing.T) {
	t.Parallel()
	c := Config{RetryBackoff: time.Second}
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, c.backoff(n))
	}
	require.Equal(t, []time.Duration{
		time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		MaxRetryBackoff, MaxRetryBackoff, MaxRetryBackoff,
	}, got)
	require.Equal(t, MaxRetryBackoff, c.backoff(1000), "no overflow after a long outage")

	slow := Config{RetryBackoff: time.Minute}
	require.Equal(t, time.Minute, slow.backoff(5), "a first delay above the cap is its own cap")
}
