package rollup_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
)

// TestWatermarkCoversEveryAcknowledgedEvent produces rounds of events for
// one tenant while another tenant streams without pause, and after each
// round waits for the stored watermark to pass the round's last
// acknowledgement: at that moment every event of the tenant produced so far
// must already be counted.
func TestWatermarkCoversEveryAcknowledgedEvent(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 3)
	r := env.Start(t, rollup.Config{MaxPollRecords: 50, WatermarkInterval: 20 * time.Millisecond}, nil)

	ctx, stop := context.WithCancel(t.Context())
	var background sync.WaitGroup
	background.Go(func() {
		// Paced below what the consumer applies, so it keeps up: a
		// consumer falling ever further behind proves no new watermark.
		for i := 0; ctx.Err() == nil; i++ {
			env.ProduceRecords(t, rolluptest.Record(t, int32(i%3), "noise", rolluptest.Events(fmt.Sprintf("n%d", i), 20)...))
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() { stop(); background.Wait() }()

	var produced int64
	for round := range 8 {
		for p := range int32(3) {
			env.Produce(t, p, "acme", rolluptest.Events(fmt.Sprintf("r%d-p%d", round, p), 5)...)
			produced += 5
		}
		acked := time.Now()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			w, err := env.DB.Watermark(t.Context(), rollup.DefaultGroup, eventlog.Topic)
			assert.NoError(c, err)
			assert.True(c, w.After(acked), "watermark %s passes %s", w, acked)
		}, rolluptest.Wait, time.Millisecond)
		require.Equal(t, produced, env.Counts(t)["acme"], "round %d: every event acknowledged before the watermark is counted", round)
	}
	require.Greater(t, r.Metric(mWatermarkAge), 0.0)
}
