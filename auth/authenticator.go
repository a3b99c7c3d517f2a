package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Defaults and limits of [Config].
const (
	// DefaultCacheTTL bounds how long a revoked key keeps working on a node.
	DefaultCacheTTL = 3 * time.Second
	// DefaultNegativeCacheTTL is short: it only absorbs retry storms of a
	// deleted or mistyped key.
	DefaultNegativeCacheTTL = time.Second
	// DefaultStaleIfError is how long past CacheTTL a node keeps using a record
	// it already has while the store is failing.
	DefaultStaleIfError = time.Minute
	// DefaultCacheSize is the number of key records (and, separately, of
	// unknown key IDs) a node keeps.
	DefaultCacheSize = 10_000
	// DefaultLookupTimeout bounds one store lookup.
	DefaultLookupTimeout = 2 * time.Second
	// MinAdminTokenLength is the shortest admin token accepted.
	MinAdminTokenLength = 16
)

// Config configures an [Authenticator]. Zero values select the defaults.
type Config struct {
	// AdminToken is the operator's credential for AdminService
	// (ABACUS_ADMIN_TOKEN). Empty disables admin access. It must be at least
	// MinAdminTokenLength printable ASCII characters without spaces, so that it
	// can travel in an authorization header.
	AdminToken string
	// CacheTTL is how long a key record fetched from the store is trusted
	// before it is fetched again; it is the revocation latency on every node
	// (default DefaultCacheTTL).
	CacheTTL time.Duration
	// NegativeCacheTTL is how long "no such key" is remembered (default
	// DefaultNegativeCacheTTL; negative disables negative caching).
	NegativeCacheTTL time.Duration
	// StaleIfError is how long past CacheTTL a cached record may still be used
	// when the store fails, trading revocation latency for availability during
	// an outage (default DefaultStaleIfError; negative disables it).
	StaleIfError time.Duration
	// CacheSize bounds the number of cached key records, and separately the
	// number of remembered unknown key IDs (default DefaultCacheSize).
	CacheSize int
	// LookupTimeout bounds one store lookup (default DefaultLookupTimeout). A
	// lookup is shared by every request waiting for the same key, so it does
	// not end when the request that started it is cancelled.
	LookupTimeout time.Duration
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// Toucher, when set, is told of every successful API key authentication
	// so that the key's last use is recorded (debounced; see [Toucher]). Nil
	// records nothing. The Authenticator does not run it: its owner calls
	// [Toucher.Run].
	Toucher *Toucher
}

// Validate returns every problem with the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	if c.AdminToken != "" {
		if len(c.AdminToken) < MinAdminTokenLength {
			errs = append(errs, fmt.Errorf("auth: admin token has %d characters, need at least %d", len(c.AdminToken), MinAdminTokenLength))
		}
		for i := range len(c.AdminToken) {
			if b := c.AdminToken[i]; b < 0x21 || b > 0x7e {
				errs = append(errs, fmt.Errorf("auth: admin token has a space, control or non-ASCII character at offset %d; it could not be sent as a bearer token", i))
				break
			}
		}
	}
	if c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("auth: cache TTL %v is negative", c.CacheTTL))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("auth: cache size %d is negative", c.CacheSize))
	}
	if c.LookupTimeout < 0 {
		errs = append(errs, fmt.Errorf("auth: lookup timeout %v is negative", c.LookupTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	switch {
	case c.NegativeCacheTTL == 0:
		c.NegativeCacheTTL = DefaultNegativeCacheTTL
	case c.NegativeCacheTTL < 0:
		c.NegativeCacheTTL = 0
	}
	switch {
	case c.StaleIfError == 0:
		c.StaleIfError = DefaultStaleIfError
	case c.StaleIfError < 0:
		c.StaleIfError = 0
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.LookupTimeout == 0 {
		c.LookupTimeout = DefaultLookupTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// KeyRecord is the stored state of an API key.
type KeyRecord struct {
	// ID is the public key ID.
	ID string
	// Tenant owns the key.
	Tenant tenancy.ID
	// Hash is HashSecret of the complete key.
	Hash []byte
	// Scopes are the permissions of the key; values unknown to this binary are
	// ignored.
	Scopes []Scope
	// RevokedAt is when the key was (or will be) revoked; zero means never.
	RevokedAt time.Time
	// ExpiresAt is when the key expires; zero means never.
	ExpiresAt time.Time
	// TenantActive is false while the owning tenant is suspended. (A store
	// does not return the keys of a deleted tenant at all.)
	TenantActive bool
}

// KeyStore is what the [Authenticator] needs from storage.
type KeyStore interface {
	// LookupAPIKey returns the record of the key with the given ID, or an error
	// wrapping ErrKeyNotFound when there is none. Any other error is treated as
	// the store being unavailable.
	LookupAPIKey(ctx context.Context, keyID string) (KeyRecord, error)
}

// Authenticator checks API keys and the admin token. It keeps a bounded cache
// of key records so that a request costs no store round trip; see the package
// documentation for the revocation guarantee. It is safe for concurrent use.
type Authenticator struct {
	cfg       Config
	store     KeyStore
	logger    *slog.Logger
	metrics   *metrics
	adminHash [sha256.Size]byte
	hasAdmin  bool

	records  *lru.Cache[string, cacheEntry]
	notFound *lru.Cache[string, time.Time] // key ID → remembered until; nil when disabled
	lookups  singleflight.Group
}

// cacheEntry is a key record as fetched, with the times that govern its use.
// The record is cached, never the verdict: revocation, expiry and the secret
// are checked on every request.
type cacheEntry struct {
	rec         KeyRecord
	fetchedAt   time.Time
	checkAfter  time.Time // fresh until then; fetch again afterwards
	usableUntil time.Time // last moment it may stand in for a failing store
}

// New returns an Authenticator that looks keys up in store. A nil logger
// discards logs; a nil registerer skips metric registration.
func New(cfg Config, store KeyStore, logger *slog.Logger, reg prometheus.Registerer) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("auth: nil key store")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	records, err := lru.New[string, cacheEntry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("auth: key cache: %w", err)
	}
	a := &Authenticator{
		cfg:     cfg,
		store:   store,
		logger:  logger,
		metrics: m,
		records: records,
	}
	// Unknown IDs get their own cache: a flood of random key IDs must not evict
	// the records of real keys.
	if cfg.NegativeCacheTTL > 0 {
		if a.notFound, err = lru.New[string, time.Time](cfg.CacheSize); err != nil {
			return nil, fmt.Errorf("auth: negative key cache: %w", err)
		}
	}
	if cfg.AdminToken != "" {
		a.adminHash = sha256.Sum256([]byte(cfg.AdminToken))
		a.hasAdmin = true
	}
	return a, nil
}

// AuthenticateAdmin returns nil when token is the admin token and
// [ErrUnauthenticated] otherwise (also when no admin token is configured).
func (a *Authenticator) AuthenticateAdmin(token string) error {
	if a.isAdmin(token) {
		a.metrics.requests.WithLabelValues(resultAdminOK).Inc()
		return nil
	}
	a.metrics.requests.WithLabelValues(resultBadAdminToken).Inc()
	a.logger.Debug("authentication rejected", slog.String("reason", resultBadAdminToken))
	return ErrUnauthenticated
}

// isAdmin compares SHA-256 digests rather than the tokens themselves so that
// the comparison takes the same time whatever the length of the guess.
func (a *Authenticator) isAdmin(token string) bool {
	if !a.hasAdmin {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], a.adminHash[:]) == 1
}

// authenticate accepts either credential; the caller authorizes the result.
func (a *Authenticator) authenticate(ctx context.Context, token string) (Principal, error) {
	if a.isAdmin(token) {
		a.metrics.requests.WithLabelValues(resultAdminOK).Inc()
		return Principal{Admin: true}, nil
	}
	return a.AuthenticateKey(ctx, token)
}

// AuthenticateKey checks an API key and returns its principal.
//
// Every rejected key — malformed, unknown, revoked, expired, wrong secret —
// yields the same [ErrUnauthenticated]. A key that is valid in every respect
// but whose tenant is suspended yields a [*TenantSuspendedError] (matching
// [ErrTenantSuspended]) naming the tenant. A store failure with no usable
// cached record yields an error wrapping [ErrUnavailable] instead, and a
// cancelled ctx its context error: neither is a verdict on the key.
//
// Each success is reported to [Config].Toucher, when set.
func (a *Authenticator) AuthenticateKey(ctx context.Context, secret string) (Principal, error) {
	id, err := ParseKey(secret)
	if err != nil {
		return Principal{}, a.reject(ctx, resultMalformedKey, "", err)
	}
	rec, found, err := a.lookup(ctx, id)
	if err != nil {
		result := resultUnavailable
		if ctx.Err() != nil {
			result = resultCanceled
		}
		a.metrics.requests.WithLabelValues(result).Inc()
		return Principal{}, err
	}
	if !found {
		return Principal{}, a.reject(ctx, resultUnknownKey, id, nil)
	}

	// The secret is compared first and always, so that response time tells an
	// attacker without the secret nothing about the key's state.
	secretOK := subtle.ConstantTimeCompare(HashSecret(secret), rec.Hash) == 1
	now := a.cfg.Now()
	switch {
	case !secretOK:
		return Principal{}, a.reject(ctx, resultWrongSecret, id, nil)
	case !rec.RevokedAt.IsZero() && !now.Before(rec.RevokedAt):
		return Principal{}, a.reject(ctx, resultRevoked, id, nil)
	case !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt):
		return Principal{}, a.reject(ctx, resultExpired, id, nil)
	}
	// A record that does not belong to this key or has no valid tenant is a
	// store bug; never let it put a bogus tenant into a request (nor into a
	// suspension answer).
	tenant, err := tenancy.ParseID(string(rec.Tenant))
	if err != nil || rec.ID != id {
		a.logger.ErrorContext(ctx, "key store returned an invalid API key record",
			slog.String("key_id", id), slog.String("record_key_id", rec.ID), slog.Any("error", err))
		return Principal{}, a.reject(ctx, resultInvalidRecord, id, err)
	}
	// Only now, with a key that would otherwise work, is the tenant's state
	// told: the caller has proved it holds the secret, so naming the state
	// reveals nothing it does not own, and it can stop retrying a key that no
	// rotation will fix.
	if !rec.TenantActive {
		a.metrics.requests.WithLabelValues(resultTenantSuspended).Inc()
		a.logger.LogAttrs(ctx, slog.LevelDebug, "authentication refused: tenant suspended",
			slog.String("key_id", id), slog.String("tenant_id", tenant.String()))
		return Principal{}, &TenantSuspendedError{Tenant: tenant}
	}

	a.metrics.requests.WithLabelValues(resultOK).Inc()
	if a.cfg.Toucher != nil {
		a.cfg.Toucher.Touch(id, now)
	}
	return Principal{Tenant: tenant, KeyID: id, Scopes: NewScopes(rec.Scopes...)}, nil
}

// Recheck tells whether the key that authenticated p still may: it returns
// nil while the key is neither revoked nor expired and its tenant is active,
// [ErrUnauthenticated] once the key is no longer valid, a
// [*TenantSuspendedError] while its tenant is suspended, and an error
// wrapping [ErrUnavailable] when the store cannot answer and the cache has no
// usable record. Long-lived streams call it for each message, so that
// revocation and suspension reach them within the cache TTL like any new
// request. It costs a cache lookup; the secret is not compared again.
func (a *Authenticator) Recheck(ctx context.Context, p Principal) error {
	if p.Admin || p.KeyID == "" {
		return nil
	}
	rec, found, err := a.lookup(ctx, p.KeyID)
	if err != nil {
		return err
	}
	now := a.cfg.Now()
	switch {
	case !found, rec.Tenant != p.Tenant,
		!rec.RevokedAt.IsZero() && !now.Before(rec.RevokedAt),
		!rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt):
		return ErrUnauthenticated
	case !rec.TenantActive:
		return &TenantSuspendedError{Tenant: p.Tenant}
	}
	return nil
}

// reject counts and logs a rejected credential and returns the one error the
// caller sees. It never logs the secret: the key ID at most.
func (a *Authenticator) reject(ctx context.Context, reason, keyID string, cause error) error {
	a.metrics.requests.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{slog.String("reason", reason)}
	if keyID != "" {
		attrs = append(attrs, slog.String("key_id", keyID))
	}
	if cause != nil {
		attrs = append(attrs, slog.String("detail", cause.Error()))
	}
	a.logger.LogAttrs(ctx, slog.LevelDebug, "authentication rejected", attrs...)
	return ErrUnauthenticated
}

// fetchResult is the outcome of a store lookup shared by singleflight.
type fetchResult struct {
	rec   KeyRecord
	found bool
}

// lookup returns the record of key id from the cache or the store.
func (a *Authenticator) lookup(ctx context.Context, id string) (KeyRecord, bool, error) {
	now := a.cfg.Now()
	if e, ok := a.records.Get(id); ok && now.Before(e.checkAfter) {
		a.metrics.cacheHits.WithLabelValues(cacheKindRecord).Inc()
		return e.rec, true, nil
	}
	if a.notFound != nil {
		if until, ok := a.notFound.Get(id); ok && now.Before(until) {
			a.metrics.cacheHits.WithLabelValues(cacheKindNotFound).Inc()
			return KeyRecord{}, false, nil
		}
	}
	a.metrics.cacheMisses.Inc()

	// Concurrent misses for one key share one store call. Each caller still
	// waits only as long as its own context allows.
	ch := a.lookups.DoChan(id, func() (any, error) { return a.fetch(ctx, id) })
	select {
	case <-ctx.Done():
		return KeyRecord{}, false, fmt.Errorf("auth: look up API key %s: %w", id, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return KeyRecord{}, false, res.Err
		}
		r := res.Val.(fetchResult)
		return r.rec, r.found, nil
	}
}

// fetch asks the store for key id and updates the caches. It runs once per
// key at a time, on behalf of every request waiting for that key.
func (a *Authenticator) fetch(ctx context.Context, id string) (res fetchResult, err error) {
	// id is a substring of the presented key; the caches must not keep the
	// whole key, secret included, alive in memory.
	id = strings.Clone(id)
	// singleflight.DoChan re-panics on a fresh goroutine, beyond any recover
	// interceptor, so a panicking store would take the process down.
	defer func() {
		if r := recover(); r != nil {
			a.logger.ErrorContext(ctx, "key store panicked",
				slog.String("key_id", id), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			res, err = fetchResult{}, fmt.Errorf("auth: look up API key %s: key store panicked: %v", id, r)
		}
	}()

	// The lookup serves every waiter, so it must not die with the request that
	// happened to start it; it keeps that request's values (trace) only.
	lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.LookupTimeout)
	defer cancel()
	// Freshness counts from before the call: the record may reflect any moment
	// of it, and the revocation bound must hold from the earliest.
	start := a.cfg.Now()
	rec, err := a.store.LookupAPIKey(lookupCtx, id)
	switch {
	case err == nil:
		a.records.Add(id, cacheEntry{
			rec:         rec,
			fetchedAt:   start,
			checkAfter:  start.Add(a.cfg.CacheTTL),
			usableUntil: start.Add(a.cfg.CacheTTL + a.cfg.StaleIfError),
		})
		if a.notFound != nil {
			a.notFound.Remove(id)
		}
		return fetchResult{rec: rec, found: true}, nil
	case errors.Is(err, ErrKeyNotFound):
		a.records.Remove(id)
		if a.notFound != nil {
			a.notFound.Add(id, start.Add(a.cfg.NegativeCacheTTL))
		}
		return fetchResult{}, nil
	}

	now := a.cfg.Now()
	if e, ok := a.records.Peek(id); ok && now.Before(e.usableUntil) {
		// Keep using the record, and do not ask the failing store again for
		// this key before another CacheTTL: otherwise every request would wait
		// out a hanging store before falling back.
		e.checkAfter = now.Add(a.cfg.CacheTTL)
		if e.checkAfter.After(e.usableUntil) {
			e.checkAfter = e.usableUntil
		}
		a.records.Add(id, e)
		a.metrics.staleServed.Inc()
		a.logger.WarnContext(ctx, "key store lookup failed; using cached API key record",
			slog.String("key_id", id), slog.Duration("record_age", now.Sub(e.fetchedAt)), slog.Any("error", err))
		return fetchResult{rec: e.rec, found: true}, nil
	}
	a.logger.WarnContext(ctx, "key store lookup failed", slog.String("key_id", id), slog.Any("error", err))
	return fetchResult{}, fmt.Errorf("%w: look up API key %s: %w", ErrUnavailable, id, err)
}
