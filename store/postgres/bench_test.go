package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// BenchmarkApplyBatch measures the rollup write with fresh events spread over
// a few tenants, types and minutes, plus 1% replays. It reports events/s; the
// target is ≥100k events/s per core of the machine running PostgreSQL, with
// batches of a few thousand events.
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("events=%d", size), func(b *testing.B) {
			db := newDB(b)
			tenants := []tenancy.ID{"acme", "globex", "initech", "umbrella"}
			types := []string{"click", "view", "purchase"}
			seq := 0
			batch := func(gen int) postgres.Batch {
				events := make([]postgres.Event, size)
				for i := range events {
					seq++
					id := seq
					if i%100 == 99 {
						id = seq - size // a replay of the previous batch
					}
					v := float64(i)
					events[i] = postgres.Event{
						Tenant: tenants[i%len(tenants)], EventID: fmt.Sprintf("evt-%012d", id), Type: types[i%len(types)],
						UserID: fmt.Sprintf("user-%d", i%97), SessionID: fmt.Sprintf("s-%d", i%31),
						Time: minute.Add(time.Duration(i%600) * time.Second), ReceivedAt: minute,
						Properties: map[string]string{"plan": "pro", "country": "NZ"}, Value: &v,
					}
				}
				return postgres.Batch{Group: "bench", Generation: 1, Events: events,
					Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: int64(gen)}}}
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				bt := batch(i)
				b.StartTimer()
				_, err := db.ApplyBatch(b.Context(), bt)
				require.NoError(b, err)
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
