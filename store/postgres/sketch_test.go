package postgres

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSketchMillionUsers checks the precision choice: a million distinct
// users, spread over sketches that are stored and merged as ApplyBatch and
// TimeSeries do, estimate within 1 %, and within three stated errors.
func TestSketchMillionUsers(t *testing.T) {
	t.Parallel()
	const users = 1_000_000
	// Ten "hours" of 100,000 users each, merged into a "day".
	var parts [][]byte
	for h := range 10 {
		sk := newSketch()
		for u := h * users / 10; u < (h+1)*users/10; u++ {
			sk.InsertHash(hashUser("user-" + strconv.Itoa(u)))
		}
		enc, err := encodeSketch(sk)
		require.NoError(t, err)
		require.Len(t, enc, denseSketchSize, "100,000 users are stored dense")
		parts = append(parts, enc)
	}
	day, err := decodeSketch(parts[0])
	require.NoError(t, err)
	for _, p := range parts[1:] {
		sk, err := decodeSketch(p)
		require.NoError(t, err)
		require.NoError(t, day.Merge(sk))
	}
	got := float64(day.Estimate())
	relErr := math.Abs(got-users) / users
	t.Logf("estimate %.0f for %d users: relative error %.4f%% (standard error %.4f%%)",
		got, users, 100*relErr, 100*UniqueUsersRelativeError)
	require.Less(t, relErr, 0.01)
	require.Less(t, relErr, 3*UniqueUsersRelativeError)
	require.InDelta(t, 0.0040625, UniqueUsersRelativeError, 1e-12)
}

// TestSketchSmallCountsNearlyExact: sparse sketches count small sets almost
// exactly, which the rollup tests rely on to detect a lost update.
func TestSketchSmallCountsNearlyExact(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 10, 1000, 20_000} {
		sk := newSketch()
		for u := range n {
			sk.InsertHash(hashUser("u" + strconv.Itoa(u)))
			sk.InsertHash(hashUser("u" + strconv.Itoa(u))) // repeats count once
		}
		enc, err := encodeSketch(sk)
		require.NoError(t, err)
		require.Less(t, len(enc), denseSketchSize, "%d users stay sparse", n)
		back, err := decodeSketch(enc)
		require.NoError(t, err)
		require.InDelta(t, float64(n), float64(back.Estimate()), math.Max(1, float64(n)*0.001), "%d users", n)
	}
}

func TestEncodeSketchPicksSmallerForm(t *testing.T) {
	t.Parallel()
	sk := newSketch()
	prev := 0
	for u := range 60_000 {
		sk.InsertHash(hashUser(strconv.Itoa(u)))
		if u%5000 != 4999 {
			continue
		}
		enc, err := encodeSketch(sk)
		require.NoError(t, err)
		require.LessOrEqual(t, len(enc), denseSketchSize)
		require.GreaterOrEqual(t, len(enc), prev, "the encoding never shrinks as users are added")
		prev = len(enc)
		back, err := decodeSketch(enc)
		require.NoError(t, err)
		require.Equal(t, sk.Estimate(), back.Estimate())
		again, err := encodeSketch(back)
		require.NoError(t, err)
		require.Equal(t, enc, again, "a decoded sketch encodes to the same bytes")
	}
	require.Equal(t, denseSketchSize, prev, "60,000 users are stored dense")
}

func TestDecodeSketchRefuses(t *testing.T) {
	t.Parallel()
	other, err := encodeSketch(newSketch())
	require.NoError(t, err)
	other[1] = 14 // another precision
	for name, b := range map[string][]byte{
		"empty":           nil,
		"short":           {2, 16, 0},
		"other precision": other,
		"bad version":     {9, 16, 0, 1, 0, 0, 0, 0},
		"truncated dense": {2, 16, 0, 0, 0, 1, 0, 0, 1, 2, 3},
	} {
		_, err := decodeSketch(b)
		require.ErrorIs(t, err, errBadSketch, name)
	}
}

// FuzzDecodeSketch feeds arbitrary stored bytes to decodeSketch: it never
// panics; whatever it accepts estimates, merges and re-encodes, and the
// re-encoded form decodes to the same estimate unless encodeSketch switched
// it to the dense form, which estimates differently by design.
func FuzzDecodeSketch(f *testing.F) {
	empty, err := encodeSketch(newSketch())
	require.NoError(f, err)
	f.Add(empty)
	small := newSketch()
	for u := range 100 {
		small.InsertHash(hashUser(strconv.Itoa(u)))
	}
	enc, err := encodeSketch(small)
	require.NoError(f, err)
	f.Add(enc)
	f.Add([]byte{2, 16, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5})
	f.Add([]byte{2, 16, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{1, 16, 3, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := decodeSketch(b)
		if err != nil {
			require.ErrorIs(t, err, errBadSketch)
			return
		}
		est := sk.Estimate()
		merged := newSketch()
		require.NoError(t, merged.Merge(sk))
		require.NoError(t, merged.Merge(small))
		merged.Estimate()
		wasDense := len(b) > 3 && b[3] == 0
		again, err := encodeSketch(sk)
		require.NoError(t, err)
		require.LessOrEqual(t, len(again), denseSketchSize)
		back, err := decodeSketch(again)
		require.NoError(t, err)
		if wasDense || len(again) < denseSketchSize {
			require.Equal(t, est, back.Estimate())
		}
	})
}
