package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

// fakeStore is an in-memory KeyStore.
type fakeStore struct {
	mu      sync.Mutex
	records map[string]KeyRecord
	err     error         // returned instead of a lookup when set
	gate    chan struct{} // when set, lookups wait for it to close
	calls   int
	ctxErrs []error // ctx.Err() of each lookup as it returned
}

func newFakeStore(recs ...KeyRecord) *fakeStore {
	s := &fakeStore{records: make(map[string]KeyRecord)}
	for _, r := range recs {
		s.records[r.ID] = r
	}
	return s
}

func (s *fakeStore) LookupAPIKey(ctx context.Context, keyID string) (KeyRecord, error) {
	s.mu.Lock()
	s.calls++
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctxErrs = append(s.ctxErrs, ctx.Err())
	if err := ctx.Err(); err != nil {
		return KeyRecord{}, err
	}
	if s.err != nil {
		return KeyRecord{}, s.err
	}
	rec, ok := s.records[keyID]
	if !ok {
		return KeyRecord{}, fmt.Errorf("fake store: key %s: %w", keyID, ErrKeyNotFound)
	}
	return rec, nil
}

func (s *fakeStore) update(fn func(*fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *fakeStore) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const testAdminToken = "admin-token-0123456789abcdef"

type testEnv struct {
	auth  *Authenticator
	store *fakeStore
	clock *fakeClock
	logs  *syncBuffer
}

// newTestEnv builds an Authenticator over a fake store and clock. The clock is
// ignored when cfg.Now is already set.
func newTestEnv(t *testing.T, cfg Config, recs ...KeyRecord) *testEnv {
	t.Helper()
	env := &testEnv{store: newFakeStore(recs...), clock: newFakeClock(), logs: &syncBuffer{}}
	if cfg.Now == nil {
		cfg.Now = env.clock.Now
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = testAdminToken
	}
	logger := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, env.store, logger, prometheus.NewRegistry())
	require.NoError(t, err)
	env.auth = a
	return env
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newKey returns a fresh key and an active record for it.
func newKey(t testing.TB, tenant tenancy.ID, scopes ...Scope) (Key, KeyRecord) {
	t.Helper()
	k, err := GenerateKey()
	require.NoError(t, err)
	return k, KeyRecord{ID: k.ID, Tenant: tenant, Hash: k.Hash, Scopes: scopes, TenantActive: true}
}

// withOtherSecret returns a well-formed key with the ID of k and a different
// secret part.
func withOtherSecret(t testing.TB, k Key) string {
	t.Helper()
	other, err := GenerateKey()
	require.NoError(t, err)
	b := []byte(k.Secret[:len(KeyPrefix)+KeyIDLength] + other.Secret[len(KeyPrefix)+KeyIDLength:])
	putChecksum(b)
	return string(b)
}

func requestCount(a *Authenticator, result string) float64 {
	return testutil.ToFloat64(a.metrics.requests.WithLabelValues(result))
}

func TestAuthenticateKey(t *testing.T) {
	t.Parallel()

	now := newFakeClock().Now()
	tests := []struct {
		name       string
		record     func(*KeyRecord) // edits the stored record; nil stores it as is
		secret     func(Key) string // the credential sent; nil sends the key
		unknown    bool             // do not store the record at all
		wantResult string           // abacus_auth_requests_total result label
		suspended  bool             // refused with a TenantSuspendedError for "acme"
		want       *Principal       // nil (and not suspended) means rejected with ErrUnauthenticated
	}{
		{name: "valid key", wantResult: resultOK, want: &Principal{Tenant: "acme", Scopes: NewScopes(ScopeIngest)}},
		{name: "revocation scheduled in the future", record: func(r *KeyRecord) { r.RevokedAt = now.Add(time.Hour) }, wantResult: resultOK, want: &Principal{Tenant: "acme", Scopes: NewScopes(ScopeIngest)}},
		{name: "expiry in the future", record: func(r *KeyRecord) { r.ExpiresAt = now.Add(time.Hour) }, wantResult: resultOK, want: &Principal{Tenant: "acme", Scopes: NewScopes(ScopeIngest)}},
		{name: "unknown scopes are dropped", record: func(r *KeyRecord) { r.Scopes = []Scope{ScopeIngest, 42} }, wantResult: resultOK, want: &Principal{Tenant: "acme", Scopes: NewScopes(ScopeIngest)}},
		{name: "wrong secret with the right ID", secret: func(k Key) string { return withOtherSecret(t, k) }, wantResult: resultWrongSecret},
		{name: "revoked", record: func(r *KeyRecord) { r.RevokedAt = now.Add(-time.Second) }, wantResult: resultRevoked},
		{name: "revoked exactly now", record: func(r *KeyRecord) { r.RevokedAt = now }, wantResult: resultRevoked},
		{name: "expired", record: func(r *KeyRecord) { r.ExpiresAt = now.Add(-time.Second) }, wantResult: resultExpired},
		{name: "suspended tenant", record: func(r *KeyRecord) { r.TenantActive = false }, wantResult: resultTenantSuspended, suspended: true},
		{name: "suspended tenant, wrong secret", record: func(r *KeyRecord) { r.TenantActive = false }, secret: func(k Key) string { return withOtherSecret(t, k) }, wantResult: resultWrongSecret},
		{name: "suspended tenant, revoked key", record: func(r *KeyRecord) { r.TenantActive = false; r.RevokedAt = now.Add(-time.Second) }, wantResult: resultRevoked},
		{name: "suspended tenant, expired key", record: func(r *KeyRecord) { r.TenantActive = false; r.ExpiresAt = now.Add(-time.Second) }, wantResult: resultExpired},
		{name: "suspended tenant, invalid record", record: func(r *KeyRecord) { r.TenantActive = false; r.Tenant = "Not A Tenant" }, wantResult: resultInvalidRecord},
		{name: "suspended tenant, malformed key", record: func(r *KeyRecord) { r.TenantActive = false }, secret: func(k Key) string { return k.Secret[:KeyLength-1] + "!" }, wantResult: resultMalformedKey},
		{name: "unknown key", unknown: true, wantResult: resultUnknownKey},
		{name: "malformed key", secret: func(k Key) string { return k.Secret[:KeyLength-1] + "!" }, wantResult: resultMalformedKey},
		{name: "garbage", secret: func(Key) string { return "hunter2" }, wantResult: resultMalformedKey},
		{name: "admin token is not a key", secret: func(Key) string { return testAdminToken }, wantResult: resultMalformedKey},
		{name: "record without tenant", record: func(r *KeyRecord) { r.Tenant = "" }, wantResult: resultInvalidRecord},
		{name: "record with invalid tenant", record: func(r *KeyRecord) { r.Tenant = "Not A Tenant" }, wantResult: resultInvalidRecord},
		{name: "record of another key", record: func(r *KeyRecord) { r.ID = "0000000000000000" }, wantResult: resultInvalidRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, rec := newKey(t, "acme", ScopeIngest)
			if tt.record != nil {
				tt.record(&rec)
			}
			var recs []KeyRecord
			if !tt.unknown {
				recs = append(recs, rec)
			}
			env := newTestEnv(t, Config{}, recs...)
			if tt.record != nil {
				// The record may carry another ID; store it under the key's.
				env.store.update(func(s *fakeStore) { s.records = map[string]KeyRecord{k.ID: rec} })
			}
			secret := k.Secret
			if tt.secret != nil {
				secret = tt.secret(k)
			}

			p, err := env.auth.AuthenticateKey(t.Context(), secret)
			require.Equal(t, 1.0, requestCount(env.auth, tt.wantResult))
			leak := secret // what must never appear in logs: past the key ID, if any
			if len(secret) > len(KeyPrefix)+KeyIDLength {
				leak = secret[len(KeyPrefix)+KeyIDLength:]
			}
			require.NotContains(t, env.logs.String(), leak, "the secret must never be logged")
			if tt.suspended {
				require.ErrorIs(t, err, ErrTenantSuspended)
				require.NotErrorIs(t, err, ErrUnauthenticated)
				var se *TenantSuspendedError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tenancy.ID("acme"), se.Tenant)
				require.Equal(t, Principal{}, p)
				return
			}
			if tt.want == nil {
				// Every rejection is the very same error: nothing to tell apart.
				require.Equal(t, ErrUnauthenticated, err)
				require.Equal(t, Principal{}, p)
				require.Contains(t, env.logs.String(), "reason="+tt.wantResult)
				return
			}
			require.NoError(t, err)
			want := *tt.want
			want.KeyID = k.ID
			require.Equal(t, want, p)
		})
	}
}

func TestCacheHitAvoidsStoreCall(t *testing.T) {
	t.Parallel()

	k, rec := newKey(t, "acme", ScopeIngest)
	env := newTestEnv(t, Config{}, rec)

	for range 3 {
		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
	}
	// A wrong secret for a cached key is answered from the cache too.
	_, err := env.auth.AuthenticateKey(t.Context(), withOtherSecret(t, k))
	require.Equal(t, ErrUnauthenticated, err)

	require.Equal(t, 1, env.store.callCount())
	require.Equal(t, 3.0, testutil.ToFloat64(env.auth.metrics.cacheHits.WithLabelValues(cacheKindRecord)))
	require.Equal(t, 1.0, testutil.ToFloat64(env.auth.metrics.cacheMisses))
}

func TestStoreChangesVisibleAfterTTL(t *testing.T) {
	t.Parallel()

	const ttl = 3 * time.Second
	tests := []struct {
		name       string
		change     func(*fakeStore, string)
		wantErr    error
		wantResult string
	}{
		{
			name:       "revoked",
			change:     func(s *fakeStore, id string) { r := s.records[id]; r.RevokedAt = time.Unix(1, 0); s.records[id] = r },
			wantErr:    ErrUnauthenticated,
			wantResult: resultRevoked,
		},
		{
			name:       "tenant suspended",
			change:     func(s *fakeStore, id string) { r := s.records[id]; r.TenantActive = false; s.records[id] = r },
			wantErr:    ErrTenantSuspended,
			wantResult: resultTenantSuspended,
		},
		{
			name:       "deleted",
			change:     func(s *fakeStore, id string) { delete(s.records, id) },
			wantErr:    ErrUnauthenticated,
			wantResult: resultUnknownKey,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, rec := newKey(t, "acme", ScopeIngest)
			env := newTestEnv(t, Config{CacheTTL: ttl}, rec)

			_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.NoError(t, err)
			env.store.update(func(s *fakeStore) { tt.change(s, k.ID) })

			// Within the TTL the cached record still answers ...
			env.clock.Advance(ttl - time.Nanosecond)
			_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.NoError(t, err)
			require.Equal(t, 1, env.store.callCount())

			// ... and at the TTL the change is seen.
			env.clock.Advance(time.Nanosecond)
			_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.ErrorIs(t, err, tt.wantErr)
			require.Equal(t, 2, env.store.callCount())
			require.Equal(t, 1.0, requestCount(env.auth, tt.wantResult))
		})
	}
}

func TestRecordTimesCheckedOnEveryRequest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		record     func(*KeyRecord, time.Time)
		wantResult string
	}{
		{name: "expiry", record: func(r *KeyRecord, now time.Time) { r.ExpiresAt = now.Add(time.Second) }, wantResult: resultExpired},
		{name: "scheduled revocation", record: func(r *KeyRecord, now time.Time) { r.RevokedAt = now.Add(time.Second) }, wantResult: resultRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, rec := newKey(t, "acme", ScopeIngest)
			env := newTestEnv(t, Config{CacheTTL: time.Minute})
			tt.record(&rec, env.clock.Now())
			env.store.update(func(s *fakeStore) { s.records[k.ID] = rec })

			_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.NoError(t, err)
			env.clock.Advance(time.Second)
			_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.Equal(t, ErrUnauthenticated, err)
			require.Equal(t, 1, env.store.callCount(), "decided from the cached record")
			require.Equal(t, 1.0, requestCount(env.auth, tt.wantResult))
		})
	}
}

func TestNegativeCache(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		negTTL    time.Duration
		wantCalls int // after two lookups within the negative TTL
	}{
		{name: "remembered", negTTL: time.Second, wantCalls: 1},
		{name: "disabled", negTTL: -1, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, rec := newKey(t, "acme", ScopeIngest)
			env := newTestEnv(t, Config{NegativeCacheTTL: tt.negTTL})

			for range 2 {
				_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
				require.Equal(t, ErrUnauthenticated, err)
			}
			require.Equal(t, tt.wantCalls, env.store.callCount())

			// Once the key exists it is found after the negative TTL at most.
			env.store.update(func(s *fakeStore) { s.records[k.ID] = rec })
			env.clock.Advance(time.Second)
			_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
			require.NoError(t, err)
		})
	}
}

func TestSingleflight(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{}, rec)
		gate := make(chan struct{})
		env.store.update(func(s *fakeStore) { s.gate = gate })

		const n = 20
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
				errs <- err
			}()
		}
		// One waiter gives up early; the shared lookup must go on for the rest.
		cancelled, cancel := context.WithCancel(t.Context())
		cancelledErr := make(chan error, 1)
		go func() {
			_, err := env.auth.AuthenticateKey(cancelled, k.Secret)
			cancelledErr <- err
		}()

		synctest.Wait() // every caller is now blocked on the one lookup
		require.Equal(t, 1, env.store.callCount())
		cancel()
		err := <-cancelledErr
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrUnauthenticated)

		close(gate)
		for range n {
			require.NoError(t, <-errs)
		}
		require.Equal(t, 1, env.store.callCount())
		require.Equal(t, []error{nil}, env.store.ctxErrs, "the shared lookup outlives a cancelled waiter")
		require.Equal(t, 1.0, requestCount(env.auth, resultCanceled))
	})
}

func TestLookupTimeout(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{LookupTimeout: 2 * time.Second}, rec)
		env.store.update(func(s *fakeStore) { s.gate = make(chan struct{}) }) // never opens

		start := time.Now()
		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.ErrorIs(t, err, ErrUnavailable)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 2*time.Second, time.Since(start))
	})
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()

	const ttl = 3 * time.Second
	errDown := errors.New("connection refused")

	t.Run("no cached record", func(t *testing.T) {
		t.Parallel()
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{}, rec)
		env.store.update(func(s *fakeStore) { s.err = errDown })

		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.ErrorIs(t, err, ErrUnavailable)
		require.ErrorIs(t, err, errDown)
		require.NotErrorIs(t, err, ErrUnauthenticated)
		require.NotContains(t, err.Error(), k.Secret)
		require.Equal(t, 1.0, requestCount(env.auth, resultUnavailable))

		// The failure is not remembered: the next request asks again.
		env.store.update(func(s *fakeStore) { s.err = nil })
		_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
	})

	t.Run("cached record bridges the outage", func(t *testing.T) {
		t.Parallel()
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{CacheTTL: ttl, StaleIfError: 10 * time.Second}, rec)
		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
		env.store.update(func(s *fakeStore) { s.err = errDown })

		env.clock.Advance(ttl)
		p, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
		require.Equal(t, tenancy.ID("acme"), p.Tenant)
		require.Equal(t, 2, env.store.callCount())
		require.Equal(t, 1.0, testutil.ToFloat64(env.auth.metrics.staleServed))

		// The failing store is not asked again for another TTL ...
		env.clock.Advance(ttl - time.Nanosecond)
		_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
		require.Equal(t, 2, env.store.callCount())

		// ... nor is the wrong secret accepted from a stale record ...
		_, err = env.auth.AuthenticateKey(t.Context(), withOtherSecret(t, k))
		require.Equal(t, ErrUnauthenticated, err)

		// ... and the record stops standing in at TTL + StaleIfError.
		env.clock.Advance(10*time.Second - ttl + time.Nanosecond)
		_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.ErrorIs(t, err, ErrUnavailable)
	})

	t.Run("stale-if-error disabled", func(t *testing.T) {
		t.Parallel()
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{CacheTTL: ttl, StaleIfError: -1}, rec)
		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
		env.store.update(func(s *fakeStore) { s.err = errDown })

		env.clock.Advance(ttl)
		_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.ErrorIs(t, err, ErrUnavailable)
	})

	t.Run("a stale record is still checked against the clock", func(t *testing.T) {
		t.Parallel()
		k, rec := newKey(t, "acme", ScopeIngest)
		env := newTestEnv(t, Config{CacheTTL: ttl, StaleIfError: time.Minute})
		rec.ExpiresAt = env.clock.Now().Add(ttl + time.Second)
		env.store.update(func(s *fakeStore) { s.records[k.ID] = rec })
		_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.NoError(t, err)
		env.store.update(func(s *fakeStore) { s.err = errDown })

		env.clock.Advance(ttl + time.Second)
		_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
		require.Equal(t, ErrUnauthenticated, err)
	})

	t.Run("panicking store", func(t *testing.T) {
		t.Parallel()
		k, _ := newKey(t, "acme", ScopeIngest)
		a, err := New(Config{}, panickingStore{}, nil, nil)
		require.NoError(t, err)

		_, err = a.AuthenticateKey(t.Context(), k.Secret)
		require.ErrorContains(t, err, "key store panicked")
		require.NotErrorIs(t, err, ErrUnauthenticated)
	})
}

type panickingStore struct{}

func (panickingStore) LookupAPIKey(context.Context, string) (KeyRecord, error) { panic("boom") }

func TestAuthenticateAdmin(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		config string // configured admin token
		token  string
		ok     bool
	}{
		{name: "right token", config: testAdminToken, token: testAdminToken, ok: true},
		{name: "wrong token", config: testAdminToken, token: "admin-token-0123456789abcdeX"},
		{name: "prefix of the token", config: testAdminToken, token: testAdminToken[:20]},
		{name: "token with a suffix", config: testAdminToken, token: testAdminToken + "x"},
		{name: "empty", config: testAdminToken, token: ""},
		{name: "no admin token configured", config: "", token: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(Config{AdminToken: tt.config}, newFakeStore(), nil, prometheus.NewRegistry())
			require.NoError(t, err)
			err = a.AuthenticateAdmin(tt.token)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, 1.0, requestCount(a, resultAdminOK))
				return
			}
			require.Equal(t, ErrUnauthenticated, err)
			require.Equal(t, 1.0, requestCount(a, resultBadAdminToken))
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "zero config", cfg: Config{}},
		{name: "negative TTLs disable features", cfg: Config{NegativeCacheTTL: -1, StaleIfError: -1}},
		{name: "short admin token", cfg: Config{AdminToken: "short"}, wantErr: []string{"admin token has 5 characters, need at least 16"}},
		{name: "admin token with a space", cfg: Config{AdminToken: "admin token 0123456789"}, wantErr: []string{"offset 5"}},
		{
			name:    "every problem is reported",
			cfg:     Config{AdminToken: "x\ty", CacheTTL: -1, CacheSize: -1, LookupTimeout: -1},
			wantErr: []string{"at least 16", "offset 1", "cache TTL -1ns is negative", "cache size -1 is negative", "lookup timeout -1ns is negative"},
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
			_, err = New(tt.cfg, newFakeStore(), nil, nil)
			require.Error(t, err)
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()

	_, err := New(Config{}, nil, nil, nil)
	require.ErrorContains(t, err, "nil key store")

	reg := prometheus.NewRegistry()
	_, err = New(Config{}, newFakeStore(), nil, reg)
	require.NoError(t, err)
	_, err = New(Config{}, newFakeStore(), nil, reg)
	require.ErrorContains(t, err, "register metrics", "a second authenticator on one registry must fail loudly")

	n, err := testutil.GatherAndCount(reg, "abacus_auth_requests_total", "abacus_auth_cache_hits_total", "abacus_auth_cache_misses_total")
	require.NoError(t, err)
	require.Positive(t, n)
}

func TestSuspensionLiftedAfterTTL(t *testing.T) {
	t.Parallel()

	const ttl = 3 * time.Second
	k, rec := newKey(t, "acme", ScopeIngest)
	rec.TenantActive = false
	env := newTestEnv(t, Config{CacheTTL: ttl}, rec)

	_, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
	require.ErrorIs(t, err, ErrTenantSuspended)
	env.store.update(func(s *fakeStore) { r := s.records[k.ID]; r.TenantActive = true; s.records[k.ID] = r })

	env.clock.Advance(ttl - time.Nanosecond)
	_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
	require.ErrorIs(t, err, ErrTenantSuspended, "the cached record still answers within the TTL")

	env.clock.Advance(time.Nanosecond)
	p, err := env.auth.AuthenticateKey(t.Context(), k.Secret)
	require.NoError(t, err)
	require.Equal(t, tenancy.ID("acme"), p.Tenant)
	require.Equal(t, 2.0, requestCount(env.auth, resultTenantSuspended))
	require.Equal(t, 1.0, requestCount(env.auth, resultOK))
}

// recordingToucher is a KeyToucher that keeps every write.
type recordingToucher struct {
	mu     sync.Mutex
	writes []map[string]time.Time
	err    error
}

func (r *recordingToucher) TouchAPIKeys(_ context.Context, used map[string]time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.writes = append(r.writes, maps.Clone(used))
	return nil
}

func (r *recordingToucher) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// written returns every key written, with the latest time written for it.
func (r *recordingToucher) written() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]time.Time)
	for _, w := range r.writes {
		for id, at := range w {
			if at.After(out[id]) {
				out[id] = at
			}
		}
	}
	return out
}

func (r *recordingToucher) writeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

func TestAuthenticatorTouchesKeys(t *testing.T) {
	t.Parallel()

	k, rec := newKey(t, "acme", ScopeIngest)
	suspendedKey, suspendedRec := newKey(t, "globex", ScopeIngest)
	suspendedRec.TenantActive = false
	revokedKey, revokedRec := newKey(t, "acme", ScopeIngest)
	revokedRec.RevokedAt = time.Unix(1, 0)
	unknownKey, _ := newKey(t, "acme", ScopeIngest)

	clock := newFakeClock()
	store := &recordingToucher{}
	toucher, err := NewToucher(store, ToucherConfig{Now: clock.Now}, nil, nil)
	require.NoError(t, err)
	env := newTestEnv(t, Config{Now: clock.Now, Toucher: toucher}, rec, suspendedRec, revokedRec)
	env.clock = clock

	_, err = env.auth.AuthenticateKey(t.Context(), k.Secret)
	require.NoError(t, err)
	for _, secret := range []string{suspendedKey.Secret, revokedKey.Secret, unknownKey.Secret, withOtherSecret(t, k), "abk_garbage"} {
		_, err = env.auth.AuthenticateKey(t.Context(), secret)
		require.Error(t, err)
	}
	_, err = env.auth.AuthenticateKey(t.Context(), testAdminToken)
	require.Error(t, err)

	toucher.flush(t.Context())
	require.Equal(t, map[string]time.Time{k.ID: clock.Now()}, store.written(), "only successful key authentications are recorded")
}
