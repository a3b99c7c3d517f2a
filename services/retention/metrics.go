package retention

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the job's Prometheus collectors, registered on the registerer
// given to [New].
type metrics struct {
	deleted     *prometheus.CounterVec // table
	dropped     *prometheus.CounterVec // table
	lastSuccess prometheus.Gauge
	failures    prometheus.Counter
	skipped     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_retention_deleted_rows_total",
			Help: "Rows deleted by retention, by table (rows of dropped TimescaleDB chunks are not counted).",
		}, []string{"table"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_retention_dropped_chunks_total",
			Help: "TimescaleDB chunks dropped whole by retention, by hypertable.",
		}, []string{"table"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_retention_last_success_timestamp_seconds",
			Help: "When this process last finished a retention round without error (Unix seconds); 0 before the first.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_retention_failures_total",
			Help: "Retention rounds that failed; the next round runs an interval later.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_retention_skipped_total",
			Help: "Retention rounds skipped because another process held the retention lock (was running a round).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deleted, m.dropped, m.lastSuccess, m.failures, m.skipped} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("retention: register metrics"), err)
		}
	}
	return m, nil
}
