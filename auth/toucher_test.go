package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func touchWrites(t *Toucher, result string) float64 {
	return testutil.ToFloat64(t.metrics.writes.WithLabelValues(result))
}

func newTestToucher(t *testing.T, store KeyToucher, cfg ToucherConfig, logs *syncBuffer) *Toucher {
	t.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tc, err := NewToucher(store, cfg, logger, prometheus.NewRegistry())
	require.NoError(t, err)
	return tc
}

func TestToucherConfigValidate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     ToucherConfig
		wantErr []string
	}{
		{name: "zero config", cfg: ToucherConfig{}},
		{name: "explicit values", cfg: ToucherConfig{Interval: time.Second, MaxPending: 1, FlushInterval: time.Millisecond, WriteTimeout: time.Second}},
		{
			name:    "every problem is reported",
			cfg:     ToucherConfig{Interval: -1, MaxPending: -1, FlushInterval: -1, WriteTimeout: -1},
			wantErr: []string{"touch interval -1ns is negative", "touch max pending -1 is negative", "touch flush interval -1ns is negative", "touch write timeout -1ns is negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
			_, err = NewToucher(&recordingToucher{}, tt.cfg, nil, nil)
			require.Error(t, err)
		})
	}
}

func TestNewToucher(t *testing.T) {
	t.Parallel()

	_, err := NewToucher(nil, ToucherConfig{}, nil, nil)
	require.ErrorContains(t, err, "nil key toucher store")

	reg := prometheus.NewRegistry()
	_, err = NewToucher(&recordingToucher{}, ToucherConfig{}, nil, reg)
	require.NoError(t, err)
	_, err = NewToucher(&recordingToucher{}, ToucherConfig{}, nil, reg)
	require.ErrorContains(t, err, "register key touch metrics")

	n, err := testutil.GatherAndCount(reg, "abacus_auth_key_touch_writes_total", "abacus_auth_key_touch_dropped_total")
	require.NoError(t, err)
	require.Equal(t, 3, n, "writes{ok}, writes{error} and dropped start at zero")
}

func TestToucherDebounce(t *testing.T) {
	t.Parallel()

	clock := newFakeClock()
	t0 := clock.Now()
	store := &recordingToucher{}
	tc := newTestToucher(t, store, ToucherConfig{Interval: time.Minute, Now: clock.Now}, nil)

	tc.Touch("key-a", t0)
	tc.Touch("key-a", t0.Add(30*time.Second))
	tc.Touch("key-b", t0.Add(time.Second))
	tc.flush(t.Context())
	require.Equal(t, []map[string]time.Time{{"key-a": t0, "key-b": t0.Add(time.Second)}}, store.writes)

	// Within the interval of its last noted use a key is not written again ...
	tc.Touch("key-a", t0.Add(time.Minute-time.Nanosecond))
	tc.flush(t.Context())
	require.Equal(t, 1, store.writeCount())

	// ... and from its end it is.
	tc.Touch("key-a", t0.Add(time.Minute))
	tc.Touch("key-b", t0.Add(time.Minute)) // key-b's interval runs until t0+61s
	tc.flush(t.Context())
	require.Equal(t, 2, store.writeCount())
	require.Equal(t, map[string]time.Time{"key-a": t0.Add(time.Minute)}, store.writes[1])

	// A use stamped earlier than one already noted (a request that read the
	// clock a moment before another) is not written.
	tc.Touch("key-a", t0.Add(50*time.Second))
	tc.flush(t.Context())
	require.Equal(t, 2, store.writeCount())

	require.Equal(t, 3.0, touchWrites(tc, touchResultOK))
	require.Equal(t, 0.0, touchWrites(tc, touchResultError))
}

func TestToucherTouchDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun counts every allocation of the process.
	tc := newTestToucher(t, &recordingToucher{}, ToucherConfig{}, nil)
	k, _ := newKey(t, "acme", ScopeIngest)
	id, err := ParseKey(k.Secret)
	require.NoError(t, err)
	at := time.Now()
	tc.Touch(id, at)

	allocs := testing.AllocsPerRun(1000, func() { tc.Touch(id, at.Add(time.Second)) })
	require.Zero(t, allocs, "a key already noted in its interval costs no allocation")
}

func TestToucherKeepsNoSecret(t *testing.T) {
	t.Parallel()

	tc := newTestToucher(t, &recordingToucher{}, ToucherConfig{}, nil)
	k, _ := newKey(t, "acme", ScopeIngest)
	id, err := ParseKey(k.Secret)
	require.NoError(t, err)
	require.Equal(t, unsafe.StringData(k.Secret[len(KeyPrefix):]), unsafe.StringData(id), "the ID shares the key's memory")

	tc.Touch(id, time.Now())
	sharesKeyMemory := func(s string) bool { return unsafe.StringData(s) == unsafe.StringData(id) }
	tc.mu.Lock()
	for pending := range tc.pending {
		require.False(t, sharesKeyMemory(pending), "the pending table must hold a copy of the key ID")
	}
	tc.mu.Unlock()
	for i := range tc.shards {
		for noted := range tc.shards[i].next {
			require.False(t, sharesKeyMemory(noted), "the noted table must hold a copy of the key ID")
		}
	}
}

func TestToucherMaxPending(t *testing.T) {
	t.Parallel()

	clock := newFakeClock()
	t0 := clock.Now()
	store := &recordingToucher{}
	tc := newTestToucher(t, store, ToucherConfig{MaxPending: 2, Now: clock.Now}, nil)

	tc.Touch("key-a", t0)
	tc.Touch("key-b", t0)
	tc.Touch("key-c", t0) // the table is full
	require.Equal(t, 1.0, testutil.ToFloat64(tc.metrics.dropped))
	tc.Touch("key-c", t0.Add(time.Second))
	require.Equal(t, 1.0, testutil.ToFloat64(tc.metrics.dropped), "a dropped key is not noted again within its interval")

	tc.flush(t.Context())
	require.Equal(t, map[string]time.Time{"key-a": t0, "key-b": t0}, store.written())

	// After the flush there is room again, and the dropped key is recorded at
	// its first use after the interval.
	tc.Touch("key-c", t0.Add(time.Minute))
	tc.flush(t.Context())
	require.Equal(t, t0.Add(time.Minute), store.written()["key-c"])
}

func TestToucherStoreErrors(t *testing.T) {
	t.Parallel()

	clock := newFakeClock()
	t0 := clock.Now()
	store := &recordingToucher{}
	logs := &syncBuffer{}
	tc := newTestToucher(t, store, ToucherConfig{Now: clock.Now}, logs)

	store.setErr(errors.New("connection refused"))
	tc.Touch("key-a", t0)
	tc.Touch("key-b", t0)
	tc.flush(t.Context())
	require.Equal(t, 2.0, touchWrites(tc, touchResultError))
	require.Equal(t, 1, strings.Count(logs.String(), "recording API key last use failed"))
	require.Contains(t, logs.String(), "connection refused")

	// A second failure within a minute is counted but not logged.
	clock.Advance(30 * time.Second)
	tc.flush(t.Context())
	require.Equal(t, 4.0, touchWrites(tc, touchResultError))
	require.Equal(t, 1, strings.Count(logs.String(), "recording API key last use failed"))

	// A minute after the last line, the next failure is logged with the count
	// of those that were not.
	clock.Advance(30 * time.Second)
	tc.Touch("key-a", t0.Add(time.Minute)) // a later use of a key still pending
	tc.flush(t.Context())
	require.Equal(t, 2, strings.Count(logs.String(), "recording API key last use failed"))
	require.Contains(t, logs.String(), "failures_not_logged=1")

	// Once the store is back, the kept uses are written, each with its latest
	// time.
	store.setErr(nil)
	tc.flush(t.Context())
	require.Equal(t, map[string]time.Time{"key-a": t0.Add(time.Minute), "key-b": t0}, store.written())
	require.Equal(t, 2.0, touchWrites(tc, touchResultOK))
	require.Equal(t, 0.0, testutil.ToFloat64(tc.metrics.dropped))
}

// flakyToucher fails its calls numbered in failOn (from 1) and records the
// others.
type flakyToucher struct {
	recordingToucher
	calls  int
	failOn map[int]bool
}

func (f *flakyToucher) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	f.mu.Lock()
	f.calls++
	fail := f.failOn[f.calls]
	f.mu.Unlock()
	if fail {
		return errors.New("statement timeout")
	}
	return f.recordingToucher.TouchAPIKeys(ctx, used)
}

func TestToucherBatches(t *testing.T) {
	t.Parallel()

	const keys = 2*touchBatchSize + 500
	at := newFakeClock().Now()
	store := &flakyToucher{failOn: map[int]bool{2: true}}
	tc := newTestToucher(t, store, ToucherConfig{}, nil)
	for i := range keys {
		tc.Touch(fmt.Sprintf("key-%05d", i), at)
	}

	// The second write fails: the first batch is stored, the rest kept.
	tc.flush(t.Context())
	require.Equal(t, 1, store.writeCount())
	require.Len(t, store.writes[0], touchBatchSize)
	tc.mu.Lock()
	require.Len(t, tc.pending, keys-touchBatchSize)
	tc.mu.Unlock()

	tc.flush(t.Context())
	require.Equal(t, 3, store.writeCount())
	for _, w := range store.writes {
		require.LessOrEqual(t, len(w), touchBatchSize)
	}
	require.Len(t, store.written(), keys)
	require.Equal(t, float64(keys), touchWrites(tc, touchResultOK))
	require.Equal(t, float64(touchBatchSize), touchWrites(tc, touchResultError), "only the failed write counts; the keys after it were not sent")
}

func TestToucherConcurrentTouches(t *testing.T) {
	t.Parallel()

	const (
		goroutines = 8
		touches    = 2000
		keys       = 50
	)
	at := newFakeClock().Now()
	store := &recordingToucher{}
	tc := newTestToucher(t, store, ToucherConfig{}, nil)
	ids := make([]string, keys)
	for i := range ids {
		ids[i] = fmt.Sprintf("key-%02d", i)
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range touches {
				tc.Touch(ids[(g+i)%keys], at.Add(time.Duration(i)*time.Millisecond))
				if i%500 == 0 {
					tc.flush(t.Context())
				}
			}
		})
	}
	wg.Wait()
	tc.flush(t.Context())

	// Every use fell within the first interval, so each key is written once.
	require.Len(t, store.written(), keys)
	require.Equal(t, float64(keys), touchWrites(tc, touchResultOK))
}

func TestToucherPrune(t *testing.T) {
	t.Parallel()

	clock := newFakeClock()
	t0 := clock.Now()
	tc := newTestToucher(t, &recordingToucher{}, ToucherConfig{Now: clock.Now}, nil)
	tc.Touch("key-old", t0)
	tc.Touch("key-new", t0.Add(30*time.Second))

	noted := func() []string {
		var out []string
		for i := range tc.shards {
			tc.shards[i].mu.RLock()
			for id := range tc.shards[i].next {
				out = append(out, id)
			}
			tc.shards[i].mu.RUnlock()
		}
		return out
	}
	tc.prune(t0.Add(time.Minute))
	require.Equal(t, []string{"key-new"}, noted(), "a key whose interval ended is forgotten")
	tc.prune(t0.Add(90 * time.Second))
	require.Empty(t, noted())
}

func TestToucherRun(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		store := &recordingToucher{}
		tc := newTestToucher(t, store, ToucherConfig{}, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- tc.Run(ctx) }()
		synctest.Wait()
		require.ErrorContains(t, tc.Run(ctx), "already running")

		// A key's first use reaches the store within one flush interval.
		first := time.Now()
		tc.Touch("key-a", first)
		time.Sleep(DefaultTouchFlushInterval)
		synctest.Wait()
		require.Equal(t, map[string]time.Time{"key-a": first}, store.written())

		// Uses noted after the last flush are written when Run ends.
		time.Sleep(time.Second)
		tc.Touch("key-b", time.Now())
		cancel()
		require.NoError(t, <-done)
		require.Contains(t, store.written(), "key-b")
		require.Equal(t, 2, store.writeCount())
	})
}

// blockingToucher never answers before its context ends.
type blockingToucher struct{}

func (blockingToucher) TouchAPIKeys(ctx context.Context, _ map[string]time.Time) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestToucherRunStopsWithinWriteTimeout(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		tc := newTestToucher(t, blockingToucher{}, ToucherConfig{WriteTimeout: 2 * time.Second}, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- tc.Run(ctx) }()

		tc.Touch("key-a", time.Now())
		synctest.Wait()
		cancel()
		start := time.Now()
		require.NoError(t, <-done)
		require.Equal(t, 2*time.Second, time.Since(start), "a hanging store delays shutdown by WriteTimeout, no more")
		require.Equal(t, 1.0, touchWrites(tc, touchResultError))
	})
}

// BenchmarkToucherTouch measures the request-path cost of a key already
// noted in its interval, from many goroutines at once.
func BenchmarkToucherTouch(b *testing.B) {
	tc, err := NewToucher(&recordingToucher{}, ToucherConfig{}, nil, nil)
	require.NoError(b, err)
	ids := make([]string, 256)
	at := time.Now()
	for i := range ids {
		ids[i] = fmt.Sprintf("key-%04d", i)
		tc.Touch(ids[i], at)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tc.Touch(ids[i%len(ids)], at)
			i++
		}
	})
}
