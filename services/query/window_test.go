package query

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
)

func TestSpan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sec  int64
		want string
	}{
		{86400, "1 day"},
		{400 * 86400, "400 days"},
		{3600, "1 hour"},
		{25 * 3600, "25 hours"},
		{60, "1 minute"},
		{61, "61 seconds"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, span(tt.sec))
	}
}

// FuzzWindow checks the bucket arithmetic on arbitrary valid instants: the
// rounded range covers the requested one, is aligned in UTC, and bucket
// indexes and bucket starts are inverse.
func FuzzWindow(f *testing.F) {
	f.Add(int64(1773500940), int64(0), int64(1773501000), int64(1), int32(1))
	f.Add(int64(1773500940), int64(999), int64(1773587340), int64(5), int32(3))
	f.Add(int64(-62135596800), int64(0), int64(-62135596800+3600), int64(0), int32(2)) // year 1
	f.Add(int64(253402300799), int64(999999999), int64(253402300799), int64(999999999), int32(3))
	const minSec, maxSec = -62135596800, 253402300799 // years 1 to 9999
	f.Fuzz(func(t *testing.T, startSec, startNano, endSec, endNano int64, g int32) {
		gran, ok := granularityOf(queryv1.Granularity(g))
		if !ok {
			return
		}
		clamp := func(v, lo, hi int64) int64 { return max(lo, min(hi, v)) }
		abs := func(v int64) int64 {
			if v < 0 {
				return -v
			}
			return v
		}
		start := time.Unix(clamp(startSec, minSec, maxSec), abs(startNano)%1e9)
		end := time.Unix(clamp(endSec, minSec, maxSec), abs(endNano)%1e9)

		sel := series{gran: gran, start: gran.floor(start)}
		w := sel.window(end)
		require.False(t, w.start.After(start))
		require.False(t, w.end.Before(w.start))
		if !end.Before(start) {
			require.False(t, w.end.Before(end), "the range covers its end")
			require.Less(t, w.end.Sub(end), gran.step, "rounded up by less than a bucket")
		}
		require.Less(t, start.Sub(w.start), gran.step, "rounded down by less than a bucket")
		for _, b := range []time.Time{w.start, w.end} {
			require.Equal(t, time.UTC, b.Location())
			require.Zero(t, b.Unix()%int64(gran.step/time.Second), "aligned to the UTC granularity")
			require.Zero(t, b.Nanosecond())
		}

		n := w.buckets()
		require.GreaterOrEqual(t, n, 0)
		for _, i := range []int{0, n / 2, n - 1} {
			if i < 0 || i >= n {
				continue
			}
			got, ok := w.bucketIndex(w.bucketStart(i))
			require.True(t, ok)
			require.Equal(t, i, got)
		}
		_, ok = w.bucketIndex(w.end)
		require.False(t, ok, "the end is not a bucket of the range")
		_, ok = w.bucketIndex(w.start.Add(-time.Nanosecond))
		require.False(t, ok)
	})
}
