package rollup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
				SessionTimeout: time.Second, RebalanceTimeout: time.Second, RetryBackoff: time.Millisecond,
			},
		},
		{name: "no brokers", cfg: Config{}, want: []string{"at least one Kafka broker"}},
		{
			name: "every problem at once",
			cfg: Config{
				Brokers: []string{"a:9092", ""}, MaxPollRecords: -1, MaxBatchEvents: -1,
				SessionTimeout: -1, RebalanceTimeout: -1, RetryBackoff: -1,
			},
			want: []string{"broker 1 is empty", "max poll records", "max batch events", "session timeout", "rebalance timeout", "retry backoff"},
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
}

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
