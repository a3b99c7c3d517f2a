package ratelimit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the result label of abacus_ratelimit_decisions_total.
const (
	resultAllowed = "allowed" // all n units
	resultPartial = "partial" // some of them
	resultLimited = "limited" // none
)

type limiterMetrics struct {
	decisions         *prometheus.CounterVec
	fallbackDecisions *prometheus.CounterVec
	fallbackActive    prometheus.Gauge
	redisErrors       prometheus.Counter
	authRefused       prometheus.Counter
}

func newLimiterMetrics(reg prometheus.Registerer) (*limiterMetrics, error) {
	m := &limiterMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_ratelimit_decisions_total",
			Help: "Rate limit decisions by bucket kind and result (allowed: every unit asked for; partial: some; limited: none).",
		}, []string{"kind", "result"}),
		fallbackDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_ratelimit_fallback_decisions_total",
			Help: "Rate limit decisions made by the per-node fallback because Redis was unreachable, by bucket kind.",
		}, []string{"kind"}),
		fallbackActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_ratelimit_fallback_active",
			Help: "1 while rate limits are enforced per node because Redis is unreachable, else 0.",
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_ratelimit_redis_errors_total",
			Help: "Rate limit decisions whose Redis call failed or timed out (each then decided locally).",
		}),
		authRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_ratelimit_auth_refused_total",
			Help: "Calls refused without trying authentication because their address had too many failed authentications.",
		}),
	}
	if err := register(reg, m.decisions, m.fallbackDecisions, m.fallbackActive, m.redisErrors, m.authRefused); err != nil {
		return nil, err
	}
	return m, nil
}

// record counts one decision on n units.
func (m *limiterMetrics) record(kind string, n int, res Result) {
	result := resultAllowed
	switch {
	case res.Allowed >= n:
	case res.Allowed == 0:
		result = resultLimited
	default:
		result = resultPartial
	}
	m.decisions.WithLabelValues(kind, result).Inc()
}

type quotaMetrics struct {
	failOpen       prometheus.Counter
	failOpenActive prometheus.Gauge
	pending        prometheus.Gauge
}

func newQuotaMetrics(reg prometheus.Registerer) (*quotaMetrics, error) {
	m := &quotaMetrics{
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_quota_fail_open_total",
			Help: "Quota reservations granted without checking the quota because Redis was unreachable; their events are counted in memory until Redis answers.",
		}),
		failOpenActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_quota_fail_open_active",
			Help: "1 while quota reservations are granted fail-open because Redis is unreachable, else 0.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_quota_pending_events",
			Help: "Net events counted in memory (fail-open reservations minus refunds) and not yet added to Redis.",
		}),
	}
	if err := register(reg, m.failOpen, m.failOpenActive, m.pending); err != nil {
		return nil, err
	}
	return m, nil
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return nil
}
