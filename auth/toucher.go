package auth

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of [ToucherConfig].
const (
	// DefaultTouchInterval is the shortest time between two recorded uses of
	// one key: last-use times are accurate to about a minute, which is what an
	// operator looking for unused keys needs, at one write per active key per
	// minute rather than one per request.
	DefaultTouchInterval = time.Minute
	// DefaultTouchMaxPending bounds the last-use times waiting to be written.
	DefaultTouchMaxPending = 100_000
	// DefaultTouchFlushInterval is how often pending last-use times are
	// written, so that a key's first use in an interval reaches the store
	// within seconds.
	DefaultTouchFlushInterval = 5 * time.Second
	// DefaultTouchWriteTimeout bounds one store write, and the final flush
	// when [Toucher.Run] ends.
	DefaultTouchWriteTimeout = 5 * time.Second
)

const (
	// touchBatchSize bounds the keys of one store write, so that one statement
	// stays small whatever the backlog after an outage.
	touchBatchSize = 1000
	// touchShards spreads the per-key state over independently locked maps so
	// that concurrent requests for different keys rarely share a lock.
	touchShards = 64
	// touchErrorLogEvery is the least time between two logged store failures;
	// the failures in between are counted in the next line.
	touchErrorLogEvery = time.Minute
)

// KeyToucher persists the last-use times of API keys (implemented by the
// PostgreSQL store).
type KeyToucher interface {
	// TouchAPIKeys records, for each key ID of used, that the key was last
	// used at the given time. Keys that no longer exist are ignored. It must
	// not keep used after returning.
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
}

// ToucherConfig configures a [Toucher]. Zero values select the defaults.
type ToucherConfig struct {
	// Interval is the shortest time between two recorded uses of one key: at
	// most one write per key per Interval (default DefaultTouchInterval).
	Interval time.Duration
	// MaxPending bounds the last-use times waiting to be written. When it is
	// reached, keys not already pending are dropped (and counted in
	// abacus_auth_key_touch_dropped_total) until a flush makes room; a dropped
	// key is recorded again at its first use after Interval (default
	// DefaultTouchMaxPending).
	MaxPending int
	// FlushInterval is how often pending last-use times are written (default
	// DefaultTouchFlushInterval).
	FlushInterval time.Duration
	// WriteTimeout bounds one store write, and the final flush when Run ends
	// (default DefaultTouchWriteTimeout).
	WriteTimeout time.Duration
	// Now is the clock (default time.Now). It must be the clock that stamps
	// the uses passed to Touch (the Authenticator's); it decides when a key's
	// state may be forgotten.
	Now func() time.Time
}

// Validate returns every problem with the configuration, joined.
func (c ToucherConfig) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("auth: touch interval %v is negative", c.Interval))
	}
	if c.MaxPending < 0 {
		errs = append(errs, fmt.Errorf("auth: touch max pending %d is negative", c.MaxPending))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("auth: touch flush interval %v is negative", c.FlushInterval))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("auth: touch write timeout %v is negative", c.WriteTimeout))
	}
	return errors.Join(errs...)
}

func (c ToucherConfig) withDefaults() ToucherConfig {
	if c.Interval == 0 {
		c.Interval = DefaultTouchInterval
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultTouchMaxPending
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultTouchFlushInterval
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultTouchWriteTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Toucher records when API keys were last used without a store write per
// request. [Toucher.Touch] is called on every authenticated request and
// notes a key's use at most once per Interval; [Toucher.Run] writes the noted
// uses every FlushInterval. It is safe for concurrent use.
type Toucher struct {
	cfg     ToucherConfig
	store   KeyToucher
	logger  *slog.Logger
	metrics *toucherMetrics
	seed    maphash.Seed
	shards  [touchShards]touchShard
	running atomic.Bool

	mu      sync.Mutex
	pending map[string]time.Time // key ID → last use not yet written

	// Only Run's goroutine uses these.
	lastErrLog time.Time
	suppressed int
}

// touchShard holds, for the keys hashed to it, the time before which a new
// use is not noted again.
type touchShard struct {
	mu   sync.RWMutex
	next map[string]int64 // key ID → Unix nanoseconds
	_    [32]byte         // keeps neighbouring shards' locks on separate cache lines
}

// NewToucher returns a Toucher that writes to store. A nil logger discards
// logs; a nil registerer skips metric registration. Nothing is written until
// Run is called.
func NewToucher(store KeyToucher, cfg ToucherConfig, logger *slog.Logger, reg prometheus.Registerer) (*Toucher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("auth: nil key toucher store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newToucherMetrics(reg)
	if err != nil {
		return nil, err
	}
	t := &Toucher{
		cfg:     cfg.withDefaults(),
		store:   store,
		logger:  logger,
		metrics: m,
		seed:    maphash.MakeSeed(),
		pending: make(map[string]time.Time),
	}
	for i := range t.shards {
		t.shards[i].next = make(map[string]int64)
	}
	return t, nil
}

// Touch notes that key keyID was used at at. It never blocks on the store,
// and once the key's use in the current interval is noted it only takes a
// read lock and allocates nothing.
func (t *Toucher) Touch(keyID string, at time.Time) {
	ns := at.UnixNano()
	sh := &t.shards[maphash.String(t.seed, keyID)%touchShards]
	sh.mu.RLock()
	next, ok := sh.next[keyID]
	sh.mu.RUnlock()
	if ok && ns < next {
		return
	}

	sh.mu.Lock()
	if next, ok := sh.next[keyID]; ok && ns < next {
		sh.mu.Unlock()
		return // another request noted it meanwhile
	}
	// keyID may be a substring of the presented key: keep a copy, never the
	// secret's memory.
	id := strings.Clone(keyID)
	sh.next[id] = ns + int64(t.cfg.Interval)
	sh.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.pending[id]; ok {
		if at.After(prev) {
			t.pending[id] = at
		}
		return
	}
	if len(t.pending) >= t.cfg.MaxPending {
		t.metrics.dropped.Inc()
		return
	}
	t.pending[id] = at
}

// Run writes the noted uses every FlushInterval until ctx is done, then once
// more within WriteTimeout, and returns nil. A failed write is logged (at
// most once a minute), counted, and its keys are written with the next flush.
// Run must not be called twice at once.
func (t *Toucher) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("auth: key toucher already running")
	}
	defer t.running.Store(false)

	ticker := time.NewTicker(t.cfg.FlushInterval)
	defer ticker.Stop()
	lastPrune := t.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			// The uses noted since the last flush would otherwise be lost with
			// the process; a short bound keeps shutdown prompt when the store
			// is down.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.WriteTimeout)
			defer cancel()
			t.flush(final)
			return nil
		case <-ticker.C:
			t.flush(ctx)
			if now := t.cfg.Now(); now.Sub(lastPrune) >= t.cfg.Interval {
				t.prune(now)
				lastPrune = now
			}
		}
	}
}

// flush writes every pending use in batches of touchBatchSize. On the first
// failure it stops and puts the unwritten uses back.
func (t *Toucher) flush(ctx context.Context) {
	t.mu.Lock()
	all := t.pending
	if len(all) == 0 {
		t.mu.Unlock()
		return
	}
	t.pending = make(map[string]time.Time)
	t.mu.Unlock()

	batch := make(map[string]time.Time, min(len(all), touchBatchSize))
	for id, at := range all {
		batch[id] = at
		delete(all, id)
		if len(batch) < touchBatchSize && len(all) > 0 {
			continue
		}
		if err := t.write(ctx, batch); err != nil {
			t.requeue(batch)
			t.requeue(all)
			t.logWriteError(ctx, err, len(batch)+len(all))
			return
		}
		clear(batch)
	}
}

func (t *Toucher) write(ctx context.Context, batch map[string]time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.WriteTimeout)
	defer cancel()
	if err := t.store.TouchAPIKeys(ctx, batch); err != nil {
		t.metrics.writes.WithLabelValues(touchResultError).Add(float64(len(batch)))
		return err
	}
	t.metrics.writes.WithLabelValues(touchResultOK).Add(float64(len(batch)))
	return nil
}

// requeue puts unwritten uses back into the pending table, keeping the later
// time of a key noted again meanwhile; what does not fit is dropped.
func (t *Toucher) requeue(uses map[string]time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, at := range uses {
		if prev, ok := t.pending[id]; ok {
			if at.After(prev) {
				t.pending[id] = at
			}
			continue
		}
		if len(t.pending) >= t.cfg.MaxPending {
			t.metrics.dropped.Inc()
			continue
		}
		t.pending[id] = at
	}
}

func (t *Toucher) logWriteError(ctx context.Context, err error, keys int) {
	now := t.cfg.Now()
	if !t.lastErrLog.IsZero() && now.Sub(t.lastErrLog) < touchErrorLogEvery {
		t.suppressed++
		return
	}
	t.logger.WarnContext(ctx, "recording API key last use failed; retrying with the next flush",
		slog.Any("error", err), slog.Int("keys", keys), slog.Int("failures_not_logged", t.suppressed))
	t.lastErrLog = now
	t.suppressed = 0
}

// prune forgets the keys whose interval ended before now, so that the state
// holds only recently used keys. Each map is rebuilt because Go maps do not
// shrink.
func (t *Toucher) prune(now time.Time) {
	ns := now.UnixNano()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		kept := make(map[string]int64)
		for id, next := range sh.next {
			if next > ns {
				kept[id] = next
			}
		}
		sh.next = kept
		sh.mu.Unlock()
	}
}
