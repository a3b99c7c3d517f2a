package postgres

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSeriesLevel(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	nzdt := time.FixedZone("NZDT", 13*3600)
	tests := []struct {
		granularity string
		start, end  time.Time
		want        string
	}{
		{GranularityDay, day, day.Add(48 * time.Hour), "rollups_1d"},
		{GranularityDay, day.In(nzdt), day.Add(24 * time.Hour).In(nzdt), "rollups_1d"},
		{GranularityDay, day.Add(time.Hour), day.Add(48 * time.Hour), "rollups_1h"},
		{GranularityDay, day, day.Add(47*time.Hour + time.Minute), "rollups_1m"},
		{GranularityDay, day.Add(time.Second), day.Add(48 * time.Hour), "rollups_1m"},
		{GranularityHour, day, day.Add(48 * time.Hour), "rollups_1h"},
		{GranularityHour, day.Add(3 * time.Hour), day.Add(5 * time.Hour), "rollups_1h"},
		{GranularityHour, day.Add(3*time.Hour + time.Minute), day.Add(5 * time.Hour), "rollups_1m"},
		{GranularityMinute, day, day.Add(48 * time.Hour), "rollups_1m"},
		{GranularityDay, day, day, "rollups_1d"},
		{GranularityDay, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "rollups_1d"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, seriesLevel(tt.granularity, tt.start, tt.end).table,
			"%s [%s, %s)", tt.granularity, tt.start, tt.end)
	}
}

func TestSeriesSQLCoversEveryMetric(t *testing.T) {
	t.Parallel()
	for _, metric := range []string{MetricCount, MetricSum, MetricAvg, MetricMin, MetricMax, MetricUniqueUsers} {
		for _, l := range rollupLevels() {
			q := seriesSQL(l.table, metric)
			require.Contains(t, q, "FROM "+l.table+"\n")
			require.Contains(t, q, "WHERE tenant_id = $1", "every tenant query filters on tenant_id")
		}
	}
	require.Panics(t, func() { seriesSQL("rollups_1m", "median") })
}
