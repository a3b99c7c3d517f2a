package postgres

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

// FuzzDecodeLimits feeds arbitrary stored documents to decodeLimits: it never
// panics, and whatever it accepts encodes and decodes back to itself.
func FuzzDecodeLimits(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		` {"kafka_shards": 4}`,
		`{"events_per_second": 1.5e3, "timestamp_past_window": 3600000000000, "unknown": [1, {}]}`,
		`{"max_batch_events": 1e30}`,
		`{"events_burst": "many"}`,
		`[]`, `null`, ``, `{`, `{"max_properties": -1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		ov, err := decodeLimits(doc)
		if err != nil {
			require.Equal(t, tenancy.LimitOverrides{}, ov, "a failed decode returns no overrides")
			return
		}
		enc, err := encodeLimits(ov)
		require.NoError(t, err, "decoded numbers are finite and encode again")
		again, err := decodeLimits(enc)
		require.NoError(t, err)
		require.Equal(t, ov, again)
	})
}

func TestLimitsEncoding(t *testing.T) {
	t.Parallel()
	shards, window := 4, 90*time.Second
	raw, rollup := 9*24*time.Hour, 30*24*time.Hour
	tests := []struct {
		name string
		ov   tenancy.LimitOverrides
		want string
	}{
		{"none", tenancy.LimitOverrides{}, `{}`},
		{"some", tenancy.LimitOverrides{KafkaShards: &shards, TimestampFutureWindow: &window},
			`{"timestamp_future_window":90000000000,"kafka_shards":4}`},
		{"retention", tenancy.LimitOverrides{RawRetention: &raw, RollupRetention: &rollup},
			`{"raw_retention":777600000000000,"rollup_retention":2592000000000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := encodeLimits(tt.ov)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(got))
			back, err := decodeLimits(got)
			require.NoError(t, err)
			require.Equal(t, tt.ov, back)
		})
	}
	_, err := decodeLimits(make([]byte, maxLimitsJSON+1))
	require.Error(t, err)
}
