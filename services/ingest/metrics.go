package ingest

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// resultAccepted is the result label of accepted events; rejected events are
// labeled with their reason in lower case without the prefix
// ("invalid_event_id", "unavailable", ...). No tenant label: tenants are
// unbounded; per-tenant usage is counted elsewhere.
const resultAccepted = "accepted"

type metrics struct {
	events *prometheus.CounterVec
	batch  prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_ingest_events_total",
			Help: "Events received by ingest, by result: accepted (acknowledged by Kafka) or the reject reason.",
		}, []string{"result"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_ingest_batch_events",
			Help:    "Events per ingest request or stream batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 .. 16384
		}),
	}
	m.events.WithLabelValues(resultAccepted)
	for n := range ingestv1.RejectReason_name {
		if n != int32(ingestv1.RejectReason_REJECT_REASON_UNSPECIFIED) {
			m.events.WithLabelValues(reasonLabel(ingestv1.RejectReason(n)))
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.batch}
}

func reasonLabel(r ingestv1.RejectReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "REJECT_REASON_"))
}

// countRejected counts the rejections of one batch.
func (m *metrics) countRejected(rejected []*ingestv1.RejectedEvent) {
	if len(rejected) == 0 {
		return
	}
	// Batches are mostly rejected for one reason; avoid a label lookup per event.
	last, n := rejected[0].GetReason(), 0
	for _, r := range rejected {
		if r.GetReason() != last {
			m.events.WithLabelValues(reasonLabel(last)).Add(float64(n))
			last, n = r.GetReason(), 0
		}
		n++
	}
	m.events.WithLabelValues(reasonLabel(last)).Add(float64(n))
}
