package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// MaxRecordBytes is the largest encoded batch [Producer.Produce] puts into one
// record; a larger batch is split into several records. It leaves room for
// the key, headers and record-batch framing below Kafka's default 1 MB limit
// on a record batch (max.message.bytes, franz-go's ProducerBatchMaxBytes), so
// no valid request ever fails for being too big for the broker. A single event
// larger than this cannot be written; ingest limits events far below it.
const MaxRecordBytes = 900 << 10

// Defaults of [ProducerConfig].
const (
	DefaultClientID         = "abacus"
	DefaultMaxBufferedBytes = 64 << 20
	DefaultLinger           = 5 * time.Millisecond
	DefaultDeliveryTimeout  = 30 * time.Second
)

// minBufferedBytes is the smallest allowed MaxBufferedBytes: one record of
// MaxRecordBytes plus its key and headers must fit into an empty buffer, or a
// batch could fail forever.
const minBufferedBytes = 1 << 20

// ProducerConfig configures a [Producer]. Zero values mean the documented
// defaults.
type ProducerConfig struct {
	// Brokers are the seed broker addresses (host:port). Required.
	Brokers []string
	// ClientID identifies this process to the brokers (default "abacus").
	ClientID string
	// MaxBufferedBytes bounds the memory of records not yet acknowledged
	// (default 64 MiB, at least 1 MiB). When it is reached, Produce fails at
	// once with ErrUnavailable rather than queueing.
	MaxBufferedBytes int64
	// Linger is how long a partition waits for more records before sending a
	// produce request (default 5ms): a small delay that batches concurrent
	// requests into fewer, larger writes.
	Linger time.Duration
	// DeliveryTimeout bounds how long a record may wait in the buffer for a
	// successful write before it is failed (default 30s). It is what frees
	// the buffer of records whose callers already gave up.
	DeliveryTimeout time.Duration
	// Shards says how many shards each tenant's events spread over (nil: one shard for
	// everyone). *tenancy.Overrides satisfies it.
	Shards ShardCounter
}

// ShardCounter gives the number of Kafka shards of a tenant.
type ShardCounter interface {
	KafkaShards(id tenancy.ID) int
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	return c
}

// Validate reports every problem of the configuration, joined. Zero values
// are valid (they mean the defaults), except for Brokers.
func (c ProducerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("eventlog: producer config: Brokers is empty; give at least one host:port"))
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("eventlog: producer config: broker %q is not host:port: %w", b, err))
		}
	}
	if c.MaxBufferedBytes != 0 && c.MaxBufferedBytes < minBufferedBytes {
		errs = append(errs, fmt.Errorf("eventlog: producer config: MaxBufferedBytes is %d, must be at least %d (one full record)", c.MaxBufferedBytes, minBufferedBytes))
	}
	if c.Linger < 0 {
		errs = append(errs, fmt.Errorf("eventlog: producer config: Linger is %v, must not be negative", c.Linger))
	}
	if c.DeliveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("eventlog: producer config: DeliveryTimeout is %v, must not be negative", c.DeliveryTimeout))
	}
	return errors.Join(errs...)
}

// Producer writes batches of events to [Topic] and reports success only after
// the broker acknowledged them (acks=all, idempotent). It is safe for
// concurrent use. Create it with [NewProducer]; stop it with [Producer.Close].
type Producer struct {
	client  *kgo.Client
	shards  ShardCounter
	logger  *slog.Logger
	reg     prometheus.Registerer
	metrics *producerMetrics

	closeOnce sync.Once
	closeErr  error
}

// NewProducer returns a producer for cfg. It does not connect: the client
// dials the brokers on first use, so New never blocks and never fails because
// Kafka is down. Metrics are registered with reg (nil means not registered).
func NewProducer(cfg ProducerConfig, logger *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.WithLogger(kgoLogger{logger.With("component", "kafka-client")}),
		// Acknowledged means durable: every in-sync replica has the write.
		// Idempotence (the default, not disabled here) makes the client's
		// own retries free of duplicates and reordering.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedBytes(int(cfg.MaxBufferedBytes)),
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// lz4 rather than zstd: ingest nodes are CPU-bound, and lz4 costs
		// several times less CPU to compress (and for the rollup to
		// decompress) while still shrinking the repetitive event payloads
		// (property keys, ids) well; zstd would save some broker disk and
		// network for noticeably more CPU and per-encoder memory.
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		// The default partitioner hashes the key (Kafka-compatible murmur2),
		// so each tenant's records go to one partition, in order.
	)
	if err != nil {
		return nil, fmt.Errorf("eventlog: new producer: %w", err)
	}
	m := newProducerMetrics(client)
	if reg != nil {
		for _, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				m.unregister(reg)
				client.Close()
				return nil, fmt.Errorf("eventlog: new producer: register metrics: %w", err)
			}
		}
	}
	return &Producer{client: client, shards: cfg.Shards, logger: logger, reg: reg, metrics: m}, nil
}

// Produce writes batch as tenant's and returns nil only after Kafka
// acknowledged all of it. Otherwise it returns an error wrapping
// [ErrUnavailable]: the buffer is full (at once, so memory stays bounded), the
// broker failed the write, or ctx ended before the acknowledgement — so a
// caller with a deadline gets its answer within it even if the broker hangs.
//
// When Produce gives up because ctx ended, the records stay queued and may
// still be written (until DeliveryTimeout). That is safe: the caller reports
// the events as not accepted, clients retry them with the same event_ids, and
// the rollup deduplicates on (tenant, event_id). For the same reason the
// records are not tied to ctx's cancellation: canceling one caller must not
// fail the other callers' records that franz-go batched with it.
//
// A batch larger than [MaxRecordBytes] is written as several records (each a
// Batch of the same tenant and received_time); if any of them fails, Produce
// fails. A batch without events writes nothing and returns nil.
func (p *Producer) Produce(ctx context.Context, tenant tenancy.ID, batch *eventlogv1.Batch) error {
	start := time.Now()
	defer func() { p.metrics.seconds.Observe(time.Since(start).Seconds()) }()

	shards := 1
	if p.shards != nil {
		shards = p.shards.KafkaShards(tenant)
	}
	var records []*kgo.Record
	for shard, part := range shardBatch(batch, shards) {
		rs, err := splitRecords(ctx, tenant, shard, part)
		if err != nil {
			return err
		}
		records = append(records, rs...)
	}
	return p.write(ctx, tenant, records)
}

// write produces records and waits for their acknowledgement or the end of
// ctx; see Produce.
func (p *Producer) write(ctx context.Context, tenant tenancy.ID, records []*kgo.Record) error {
	if len(records) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		// Do not queue work for a caller that is already gone.
		p.metrics.records.WithLabelValues(resultAbandoned).Add(float64(len(records)))
		return fmt.Errorf("%w: not written for tenant %s, the caller gave up before the write started (%v)", ErrUnavailable, tenant, err)
	}

	// Buffered so that promises never block the client, even after we
	// stopped listening.
	done := make(chan error, len(records))
	promise := func(_ *kgo.Record, err error) { done <- err }
	rctx := context.WithoutCancel(ctx) // keeps the trace context, drops cancellation
	for _, r := range records {
		// TryProduce fails at once with ErrMaxBuffered when the buffer is
		// full; Produce would block until space frees up.
		p.client.TryProduce(rctx, r, promise)
	}

	var first error
	for pending := len(records); pending > 0; pending-- {
		select {
		case err := <-done:
			p.metrics.observe(err)
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			p.metrics.records.WithLabelValues(resultAbandoned).Add(float64(pending))
			return fmt.Errorf("%w: no acknowledgement from Kafka for tenant %s before the caller gave up (%v); the records may still be written", ErrUnavailable, tenant, ctx.Err())
		}
	}
	if first != nil {
		return produceError(tenant, first)
	}
	return nil
}

// produceError classifies an error from a produce promise.
func produceError(tenant tenancy.ID, err error) error {
	switch {
	case errors.Is(err, kgo.ErrMaxBuffered):
		return fmt.Errorf("%w: produce buffer is full, Kafka is not keeping up (tenant %s)", ErrUnavailable, tenant)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		// Retrying cannot help; splitRecords should make this impossible.
		return fmt.Errorf("eventlog: produce for tenant %s: %w", tenant, err)
	default:
		// The cause is formatted, not wrapped: whatever it wraps (a dial
		// timeout, a broker error), the outcome is "unavailable, retry".
		return fmt.Errorf("%w: produce for tenant %s: %v", ErrUnavailable, tenant, err)
	}
}

// splitRecords encodes batch into records of at most MaxRecordBytes of
// value each, keeping the events in order.
func splitRecords(ctx context.Context, tenant tenancy.ID, shard int, batch *eventlogv1.Batch) ([]*kgo.Record, error) {
	if batch == nil {
		return nil, errors.New("eventlog: produce: nil batch")
	}
	events := batch.GetEvents()
	if len(events) == 0 {
		return nil, nil
	}
	envelope := &eventlogv1.Batch{TenantId: string(tenant), ReceivedTime: batch.GetReceivedTime()}
	base := proto.Size(envelope)
	// The common case: everything fits into one record.
	if base+proto.Size(batch) <= MaxRecordBytes {
		r, err := NewShardRecord(ctx, tenant, shard, batch)
		if err != nil {
			return nil, err
		}
		return []*kgo.Record{r}, nil
	}

	var (
		records []*kgo.Record
		from    int
		size    = base
	)
	flush := func(to int) error {
		r, err := NewShardRecord(ctx, tenant, shard, &eventlogv1.Batch{
			TenantId:     batch.GetTenantId(),
			Events:       events[from:to],
			ReceivedTime: batch.GetReceivedTime(),
		})
		if err != nil {
			return err
		}
		records = append(records, r)
		from, size = to, base
		return nil
	}
	for i, ev := range events {
		n := proto.Size(ev)
		n += protowire.SizeTag(2) + protowire.SizeBytes(n) - n // field 2, length-delimited
		if size+n > MaxRecordBytes && i > from {
			if err := flush(i); err != nil {
				return nil, err
			}
		}
		size += n
	}
	if err := flush(len(events)); err != nil {
		return nil, err
	}
	return records, nil
}

// Ping checks that a broker is reachable, for readiness probes. The error
// wraps ErrUnavailable.
func (p *Producer) Ping(ctx context.Context) error {
	if err := p.client.Ping(ctx); err != nil {
		return fmt.Errorf("%w: ping: %v", ErrUnavailable, err)
	}
	return nil
}

// Close waits, bounded by ctx, for buffered records to be acknowledged, then
// closes the client (failing what is left) and unregisters the metrics.
// Produce must not be called after Close. Close is idempotent.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		if err := p.client.Flush(ctx); err != nil {
			p.closeErr = fmt.Errorf("eventlog: close: flush: %w", err)
			p.logger.Warn("event log producer closed before all buffered records were acknowledged",
				"buffered_records", p.client.BufferedProduceRecords(), "error", err)
		}
		p.client.Close()
		if p.reg != nil {
			p.metrics.unregister(p.reg)
		}
	})
	return p.closeErr
}

// Results of abacus_eventlog_produced_records_total.
const (
	resultAcked      = "acked"       // written and acknowledged
	resultBufferFull = "buffer_full" // rejected at once: the buffer is full
	resultFailed     = "failed"      // the broker or client failed the write
	resultAbandoned  = "abandoned"   // the caller gave up first; may still be written
)

type producerMetrics struct {
	records  *prometheus.CounterVec
	seconds  prometheus.Histogram
	buffered prometheus.GaugeFunc
}

func newProducerMetrics(client *kgo.Client) *producerMetrics {
	m := &producerMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_eventlog_produced_records_total",
			Help: "Records handed to the event log producer, by result: acked, buffer_full, failed, abandoned (the caller gave up before the acknowledgement; the record may still be written).",
		}, []string{"result"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_eventlog_produce_seconds",
			Help:    "Time Produce took, from the call until every record of the batch was acknowledged or failed, or the caller gave up.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 30, 16),
		}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "abacus_eventlog_buffered_bytes",
			Help: "Bytes of records buffered in the producer and not yet acknowledged; Produce fails fast when this reaches the configured maximum.",
		}, func() float64 { return float64(client.BufferedProduceBytes()) }),
	}
	for _, r := range []string{resultAcked, resultBufferFull, resultFailed, resultAbandoned} {
		m.records.WithLabelValues(r)
	}
	return m
}

func (m *producerMetrics) observe(err error) {
	switch {
	case err == nil:
		m.records.WithLabelValues(resultAcked).Inc()
	case errors.Is(err, kgo.ErrMaxBuffered):
		m.records.WithLabelValues(resultBufferFull).Inc()
	default:
		m.records.WithLabelValues(resultFailed).Inc()
	}
}

func (m *producerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.records, m.seconds, m.buffered}
}

func (m *producerMetrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

// kgoLogger sends franz-go's log lines to slog.
type kgoLogger struct{ logger *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		l.logger.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		l.logger.Warn(msg, keyvals...)
	case kgo.LogLevelInfo:
		l.logger.Info(msg, keyvals...)
	default:
		l.logger.Debug(msg, keyvals...)
	}
}
