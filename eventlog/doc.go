// Package eventlog is the Kafka event log between ingest (the writer) and rollup
// (the reader): the record format, its decoder, a producer that reports success
// only after the broker acknowledged a write, and topic setup.
//
// # Record format
//
// Every record goes to [Topic] and carries:
//
//   - key: the tenant ID for the tenant's shard 0, "tenant/N" for shard N. A
//     tenant has one shard unless an operator raises its kafka_shards limit;
//     an event's shard is a hash of its user_id (else its event_id), so each
//     end user's events stay in order in one partition (see shard.go).
//   - value: a proto-encoded abacus.eventlog.v1.Batch whose tenant_id is the
//     tenant. [Producer.Produce] splits a batch larger than [MaxRecordBytes]
//     over several records, so every record fits the broker's default limit.
//   - header [HeaderTenant]: the tenant ID again, and [HeaderSchema]: the
//     decimal [SchemaVersion]. A reader rejects a record whose three copies of
//     the tenant disagree or whose schema it does not know (see [Decode] and
//     [ErrPoison]); such records go to [DeadLetterTopic].
//   - W3C trace context (traceparent, tracestate) of the writer's span, so the
//     rollup can continue the trace ([ExtractTraceContext]).
//
// # Why one record per validated batch
//
// A record carries a batch of events (up to MaxRecordBytes), not one event.
// At hundreds of thousands of events per second, one record per event would
// mean as many record headers, keys, trace headers, CRC and compression frames
// and producer callbacks per second, several times the payload's own cost,
// and the rollup would open as many envelopes. A batch is the unit ingest
// already judges and acknowledges: it is written with one Produce call, so
// one acknowledgement covers every event the response reports accepted.
// [Producer.ProduceEncoded] builds a record from the events' own encodings as
// ingest received them (Batch.events is a repeated Event, so an Event's bytes
// are a valid element as they are): nothing is decoded or encoded again on
// the way. What batching costs — a batch stays in one shard per user and a
// poison record holds many events — is handled by sharding and by the rollup's
// dead-letter path.
//
// The tenant is in the record three times on purpose (ARCHITECTURE.md,
// invariant 1): the key decides partitioning, the header lets tools route and
// filter without decoding, and the body is what is stored. Any disagreement is
// a bug or tampering, never something to guess about.
//
// # Durability
//
// [Producer.Produce] returns nil only after Kafka acknowledged every record of
// the batch with acks=all on an idempotent producer (invariant 2). Memory is
// bounded by [ProducerConfig.MaxBufferedBytes]: when the buffer is full,
// Produce fails at once with [ErrUnavailable] instead of queueing. Produce
// also gives up when its context ends, so a caller with a deadline always gets
// an answer in time even if the broker hangs. A batch given up on may still be
// written later; that is safe because clients retry with the same event_ids and
// the rollup deduplicates on (tenant, event_id) (invariant 3).
package eventlog
