package eventlog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// EncodedEvent is one abacus.ingest.v1.Event in its protobuf encoding, as
// ingest received and checked it, with the key that picks its shard.
//
// Ingest hands events over encoded so that a batch is never decoded into
// Go values and encoded again on its way to Kafka: a record's value is the
// Batch envelope around the events' own bytes (Batch.events is field 2 of
// type Event, so an Event's encoding is a valid Batch element as is).
type EncodedEvent struct {
	// Data is the Event's encoding. It must decode as an Event; the producer
	// does not look inside.
	Data []byte
	// ShardKey is the event's user_id, or its event_id when it has no user:
	// events of one key stay in one shard, in order.
	ShardKey []byte
}

// Field numbers of abacus.eventlog.v1.Batch.
const (
	batchTenantField   = 1
	batchEventsField   = 2
	batchReceivedField = 3
)

// ProduceEncoded writes encoded events as one batch of tenant's, received at
// received, with the guarantees of [Producer.Produce]: nil only after Kafka
// acknowledged every record, otherwise an error wrapping [ErrUnavailable]
// (or, for a record the broker refuses as too large, a plain error). The
// events are spread over the tenant's shards and split into records of at
// most [MaxRecordBytes]; events keeps its order within each shard. The
// caller must not modify the events' Data until ProduceEncoded returns.
func (p *Producer) ProduceEncoded(ctx context.Context, tenant tenancy.ID, received time.Time, events []EncodedEvent) error {
	if len(events) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { p.metrics.seconds.Observe(time.Since(start).Seconds()) }()
	shards := 1
	if p.shards != nil {
		shards = p.shards.KafkaShards(tenant)
	}
	records, err := encodedRecords(ctx, tenant, shards, received, events)
	if err != nil {
		return err
	}
	return p.write(ctx, tenant, records)
}

// encodedRecords builds the records of a batch of encoded events.
func encodedRecords(ctx context.Context, tenant tenancy.ID, shards int, received time.Time, events []EncodedEvent) ([]*kgo.Record, error) {
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return nil, fmt.Errorf("eventlog: new record: %w", err)
	}
	ts, err := proto.Marshal(timestamppb.New(received))
	if err != nil {
		return nil, fmt.Errorf("eventlog: new record: encode received time: %w", err)
	}
	env := envelope{tenant: tenant, received: ts}
	if shards <= 1 {
		return env.records(ctx, 0, events, nil)
	}
	// Group by shard, keeping the order of first appearance and the order
	// of events within each shard.
	byShard := make(map[int][]EncodedEvent)
	var order []int
	for _, ev := range events {
		s := shardOfKey(ev.ShardKey, shards)
		if _, ok := byShard[s]; !ok {
			order = append(order, s)
		}
		byShard[s] = append(byShard[s], ev)
	}
	var records []*kgo.Record
	for _, s := range order {
		records, err = env.records(ctx, s, byShard[s], records)
		if err != nil {
			return nil, err
		}
	}
	return records, nil
}

// shardOfKey returns the shard of a shard key among n: FNV-1a, as shardOf.
func shardOfKey(key []byte, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// envelope is what every record of a batch repeats: the tenant and the
// received time (already encoded).
type envelope struct {
	tenant   tenancy.ID
	received []byte
}

func (e envelope) size() int {
	return protowire.SizeTag(batchTenantField) + protowire.SizeBytes(len(e.tenant)) +
		protowire.SizeTag(batchReceivedField) + protowire.SizeBytes(len(e.received))
}

// records appends to out the records of one shard's events, each at most
// MaxRecordBytes of value.
func (e envelope) records(ctx context.Context, shard int, events []EncodedEvent, out []*kgo.Record) ([]*kgo.Record, error) {
	base := e.size()
	from, size := 0, base
	for i, ev := range events {
		n := protowire.SizeTag(batchEventsField) + protowire.SizeBytes(len(ev.Data))
		if base+n > MaxRecordBytes {
			return nil, fmt.Errorf("eventlog: new record: an event of %d bytes does not fit into a record", len(ev.Data))
		}
		if size+n > MaxRecordBytes {
			out = append(out, e.record(ctx, shard, events[from:i], size))
			from, size = i, base
		}
		size += n
	}
	return append(out, e.record(ctx, shard, events[from:], size)), nil
}

// record encodes one record of size value bytes.
func (e envelope) record(ctx context.Context, shard int, events []EncodedEvent, size int) *kgo.Record {
	value := make([]byte, 0, size)
	value = protowire.AppendTag(value, batchTenantField, protowire.BytesType)
	value = protowire.AppendString(value, string(e.tenant))
	for _, ev := range events {
		value = protowire.AppendTag(value, batchEventsField, protowire.BytesType)
		value = protowire.AppendBytes(value, ev.Data)
	}
	value = protowire.AppendTag(value, batchReceivedField, protowire.BytesType)
	value = protowire.AppendBytes(value, e.received)
	r := &kgo.Record{
		Topic: Topic,
		Key:   recordKey(e.tenant, shard),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderTenant, Value: []byte(e.tenant)},
			{Key: HeaderSchema, Value: []byte(schemaValue)},
		},
	}
	traceContext.Inject(ctx, (*headerCarrier)(&r.Headers))
	return r
}

// EncodeEvents encodes the events of batch for [Producer.ProduceEncoded].
func EncodeEvents(batch *eventlogv1.Batch) ([]EncodedEvent, error) {
	if batch == nil {
		return nil, errors.New("eventlog: encode events: nil batch")
	}
	out := make([]EncodedEvent, len(batch.GetEvents()))
	for i, ev := range batch.GetEvents() {
		data, err := proto.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("eventlog: encode event %d: %w", i, err)
		}
		key := ev.GetUserId()
		if key == "" {
			key = ev.GetEventId()
		}
		out[i] = EncodedEvent{Data: data, ShardKey: []byte(key)}
	}
	return out, nil
}
