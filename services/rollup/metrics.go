package rollup

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the consumer's Prometheus collectors, registered on the
// registerer given to [New].
type metrics struct {
	events          *prometheus.CounterVec // result: inserted | duplicate
	records         *prometheus.CounterVec // result: ok | poison
	batchSeconds    prometheus.Histogram
	dbFailures      prometheus.Counter
	dbFailing       prometheus.Gauge
	fenced          prometheus.Counter
	deadLetterFails prometheus.Counter
	commitFailures  prometheus.Counter
	lag             *prometheus.GaugeVec // topic, partition
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_rollup_events_total",
			Help: "Events applied to the rollups, by result: inserted (new, counted) or duplicate (already counted, or repeated within the batch).",
		}, []string{"result"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_rollup_records_total",
			Help: "Event-log records consumed, by result: ok (applied) or poison (sent to the dead-letter topic).",
		}, []string{"result"}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_rollup_batch_seconds",
			Help:    "Time to commit one batch (one database transaction) of a poll, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms .. 33 s
		}),
		dbFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_db_failures_total",
			Help: "Failed database calls (apply batch, load offsets); each is retried.",
		}),
		dbFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_rollup_db_failing",
			Help: "1 while the consumer is retrying against a failing database and makes no progress, else 0.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_fenced_batches_total",
			Help: "Batches the database refused because a newer consumer-group generation owns their partitions.",
		}),
		deadLetterFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_dead_letter_failures_total",
			Help: "Failed attempts to produce poison records to the dead-letter topic; each is retried.",
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_kafka_commit_failures_total",
			Help: "Failed advisory offset commits to Kafka (the database offsets are authoritative).",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_rollup_partition_lag",
			Help: "Records behind the high watermark per assigned partition, as of the last applied batch.",
		}, []string{"topic", "partition"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.events, m.records, m.batchSeconds, m.dbFailures, m.dbFailing,
		m.fenced, m.deadLetterFails, m.commitFailures, m.lag,
	} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("rollup: register metrics"), err)
		}
	}
	// Expose the label values before the first event so dashboards and
	// rate() see zeros rather than absent series.
	for _, r := range []string{resultInserted, resultDuplicate} {
		m.events.WithLabelValues(r)
	}
	for _, r := range []string{resultOK, resultPoison} {
		m.records.WithLabelValues(r)
	}
	return m, nil
}

// Label values of the result label.
const (
	resultInserted  = "inserted"
	resultDuplicate = "duplicate"
	resultOK        = "ok"
	resultPoison    = "poison"
)

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
