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
	eventsPerSecond prometheus.Gauge
	claims          prometheus.Counter
	notifyFailures  *prometheus.CounterVec // reason: publish | overflow
	notified        prometheus.Counter
	watermarkAge    prometheus.Gauge
	sketchesMerged  prometheus.Counter
	sketchFailures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_rollup_events_total",
			Help: "Events of committed batches, by result: inserted (new, counted) or duplicate (already counted, or repeated within the batch). rate() of the sum is the committed processing rate.",
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
			Help: "Batches (and partition claims) the database refused because a newer consumer-group generation owns their partitions.",
		}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_partition_claims_total",
			Help: "Partitions claimed in the database at this member's generation when the group assigned them.",
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
			Help: "Records between the offset stored in the database and the end of the partition, per partition this member owns; set after each batch and refreshed from the brokers every lag interval, so it grows while the consumer is stalled.",
		}, []string{"topic", "partition"}),
		eventsPerSecond: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_rollup_events_per_second",
			Help: "Events of committed batches per second over the last lag interval (for status pages; in PromQL prefer rate(abacus_rollup_events_total[1m])).",
		}),
		notifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_rollup_notify_failures_total",
			Help: "Change notifications not delivered, by reason: publish (a Notify call failed; its changes are dropped) or overflow (a committed batch's changes did not fit the notification queue). Batches are never held up by either.",
		}, []string{"reason"}),
		watermarkAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_rollup_watermark_age_seconds",
			Help: "Age of the oldest watermark this member stored for the partitions it owns: every event accepted before now minus this many seconds is in the rollups. Set each time watermarks are stored.",
		}),
		sketchesMerged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_coarse_sketches_merged_total",
			Help: "Hourly and daily unique-user sketches rebuilt from the finer rollups after batches marked them pending.",
		}),
		sketchFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_coarse_sketch_merge_failures_total",
			Help: "Failed merges of pending hourly and daily sketches; each is tried again a sketch interval later, and queries merge the finer sketches meanwhile.",
		}),
		notified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rollup_notified_buckets_total",
			Help: "Changed rollup buckets handed to the notifier successfully (repeats of a bucket waiting in the queue count once).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.events, m.records, m.batchSeconds, m.dbFailures, m.dbFailing,
		m.fenced, m.deadLetterFails, m.commitFailures, m.lag,
		m.eventsPerSecond, m.claims, m.notifyFailures, m.notified, m.watermarkAge,
		m.sketchesMerged, m.sketchFailures,
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
	for _, r := range []string{notifyPublish, notifyOverflow} {
		m.notifyFailures.WithLabelValues(r)
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

// Label values of the reason label of abacus_rollup_notify_failures_total.
const (
	notifyPublish  = "publish"
	notifyOverflow = "overflow"
)

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
