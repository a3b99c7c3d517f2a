package devstack_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

func TestKafka(t *testing.T) {
	t.Parallel()
	const topic = "events"
	tests := []struct {
		name      string
		persisted bool // started with a data dir
	}{
		{name: "memory only starts empty after restart"},
		{name: "data dir keeps records across restart", persisted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := ""
			if tt.persisted {
				dir = t.TempDir()
			}
			k, err := devstack.StartKafka(ctx, dir, 0, testLogger(t), kfake.SeedTopics(1, topic))
			require.NoError(t, err)
			t.Cleanup(k.Stop)
			brokers := k.Brokers()
			require.Len(t, brokers, 1)
			require.NotNil(t, k.Cluster())

			producer := newKafkaClient(t, brokers)
			for i := range 3 {
				rec := &kgo.Record{Topic: topic, Key: []byte("tenant"), Value: fmt.Appendf(nil, "event-%d", i)}
				require.NoError(t, producer.ProduceSync(ctx, rec).FirstErr())
			}
			require.Len(t, consumeN(t, brokers, topic, 3), 3)
			producer.Close()

			require.NoError(t, k.Restart(ctx))
			require.Equal(t, brokers, k.Brokers(), "restart keeps the port")

			ends, err := kadm.NewClient(newKafkaClient(t, brokers)).ListEndOffsets(ctx, topic)
			require.NoError(t, err)
			end, ok := ends.Lookup(topic, 0)
			require.True(t, ok)
			require.NoError(t, end.Err)
			if !tt.persisted {
				require.Zero(t, end.Offset)
				return
			}
			require.EqualValues(t, 3, end.Offset)
			got := consumeN(t, brokers, topic, 3)
			for i, rec := range got {
				require.Equal(t, fmt.Sprintf("event-%d", i), string(rec.Value))
			}
		})
	}
}

func TestStartKafka_ReusesRecordedPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := devstack.StartKafka(t.Context(), dir, 0, testLogger(t))
	require.NoError(t, err)
	first := k.Brokers()
	k.Stop()
	k.Stop() // idempotent

	k, err = devstack.StartKafka(t.Context(), dir, 0, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(k.Stop)
	require.Equal(t, first, k.Brokers())
}
