package app_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/client"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// TestSDKAgainstTheServer: the Go SDK, sending at several times a tenant's
// rate limit through the real server, honours the retry delays and ends with
// every event accepted and counted exactly once.
func TestSDKAgainstTheServer(t *testing.T) {
	t.Parallel()
	s := startSystem(t, fastLimits)
	secret := s.tenantWithKey(t, "sdk")
	s.setLimits(t, "sdk", &adminv1.TenantLimits{EventsPerSecond: ptr(400.0), EventsBurst: ptr(int64(200))}, "limits.events_per_second", "limits.events_burst")
	s.waitLimits(t, secret, 400)

	var mu sync.Mutex
	verdicts := map[string]client.Verdict{}
	c, err := client.New(t.Context(), client.Config{
		Target:        s.app.GRPCAddr(),
		APIKey:        secret,
		Insecure:      true,
		BatchSize:     100,
		FlushInterval: 20 * time.Millisecond,
		MaxRetries:    100,
		OnVerdict: func(v client.Verdict) {
			mu.Lock()
			defer mu.Unlock()
			_, dup := verdicts[v.EventID]
			require.False(t, dup, "one verdict per event")
			verdicts[v.EventID] = v
		},
	})
	require.NoError(t, err)

	const total = 2000 // 5x the burst, sent at once: most are throttled at first
	now := time.Now().UTC()
	for i := range total {
		require.NoError(t, c.Send(t.Context(), &ingestv1.Event{
			EventId: fmt.Sprintf("sdk-%04d", i), Type: "sdk", UserId: fmt.Sprintf("u%d", i%50), Timestamp: timestamppb.New(now),
		}))
	}
	require.NoError(t, c.Close(t.Context()))

	mu.Lock()
	require.Len(t, verdicts, total)
	retried := 0
	for id, v := range verdicts {
		require.True(t, v.Accepted, "%s: %+v", id, v)
		if v.Attempts > 1 {
			retried++
		}
	}
	mu.Unlock()
	require.Positive(t, retried, "the limit made the client retry")
	stats := c.Stats()
	require.EqualValues(t, total, stats.Accepted)
	s.waitTotal(t, secret, "sdk", now, total)
}
