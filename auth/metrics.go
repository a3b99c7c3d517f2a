package auth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the result label of abacus_auth_requests_total. The rejection
// reasons exist only here and in debug logs, never in a response; the one
// exception is tenant_suspended, which the holder of a valid key is told.
const (
	resultOK              = "ok"
	resultAdminOK         = "admin_ok"
	resultMissing         = "missing_credentials"
	resultMalformedAuthz  = "malformed_header"
	resultMalformedKey    = "malformed_key"
	resultUnknownKey      = "unknown_key"
	resultWrongSecret     = "wrong_secret"
	resultRevoked         = "revoked"
	resultExpired         = "expired"
	resultTenantSuspended = "tenant_suspended"
	resultInvalidRecord   = "invalid_record"
	resultBadAdminToken   = "bad_admin_token"
	resultUnavailable     = "store_unavailable"
	resultCanceled        = "canceled"
)

// Values of the kind label of abacus_auth_cache_hits_total.
const (
	cacheKindRecord   = "record"
	cacheKindNotFound = "not_found"
)

type metrics struct {
	requests    *prometheus.CounterVec
	cacheHits   *prometheus.CounterVec
	cacheMisses prometheus.Counter
	staleServed prometheus.Counter
	denied      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_auth_requests_total",
			Help: "Authentication attempts by result (ok, admin_ok, or the reason a credential was rejected or could not be checked).",
		}, []string{"result"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_auth_cache_hits_total",
			Help: "API key lookups answered by the cache, by kind (record: a fresh key record; not_found: a remembered unknown key ID).",
		}, []string{"kind"}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_auth_cache_misses_total",
			Help: "API key lookups that went to the key store (concurrent misses for one key share a store call).",
		}),
		staleServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_auth_cache_stale_served_total",
			Help: "Key store failures bridged by a cached key record older than the cache TTL.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_auth_denied_total",
			Help: "Authenticated requests denied by method policy, by reason.",
		}, []string{"reason"}),
	}
	// Initialise every label value so that rates start at zero rather than
	// appearing with the first event.
	for _, r := range []string{
		resultOK, resultAdminOK, resultMissing, resultMalformedAuthz, resultMalformedKey, resultUnknownKey,
		resultWrongSecret, resultRevoked, resultExpired, resultTenantSuspended, resultInvalidRecord,
		resultBadAdminToken, resultUnavailable, resultCanceled,
	} {
		m.requests.WithLabelValues(r)
	}
	m.cacheHits.WithLabelValues(cacheKindRecord)
	m.cacheHits.WithLabelValues(cacheKindNotFound)
	for _, r := range []string{ReasonMethodNotAllowed, ReasonAdminRequired, ReasonTenantKeyRequired, ReasonMissingScope} {
		m.denied.WithLabelValues(r)
	}

	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.cacheHits, m.cacheMisses, m.staleServed, m.denied} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: register metrics: %w", err)
	}
	return m, nil
}

// Values of the result label of abacus_auth_key_touch_writes_total.
const (
	touchResultOK    = "ok"
	touchResultError = "error"
)

type toucherMetrics struct {
	writes  *prometheus.CounterVec
	dropped prometheus.Counter
}

func newToucherMetrics(reg prometheus.Registerer) (*toucherMetrics, error) {
	m := &toucherMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_auth_key_touch_writes_total",
			Help: "API key last-use times sent to the key store, by result (ok, or error: kept and sent again with the next flush).",
		}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_auth_key_touch_dropped_total",
			Help: "API key uses not recorded because the pending last-use table was full.",
		}),
	}
	m.writes.WithLabelValues(touchResultOK)
	m.writes.WithLabelValues(touchResultError)
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.writes, m.dropped} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: register key touch metrics: %w", err)
	}
	return m, nil
}
