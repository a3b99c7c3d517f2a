package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

const (
	// Topic is the event log topic: accepted events, keyed by tenant.
	Topic = "abacus.events.v1"

	// RollupGroup is the consumer group of the rollup consumers. Its offsets
	// and watermarks are stored in PostgreSQL under this name, where the
	// query service reads the watermark of its answers.
	RollupGroup = "abacus-rollup"

	// DeadLetterTopic receives records a reader can never process (see
	// [ErrPoison]), unchanged, for an operator to inspect.
	DeadLetterTopic = "abacus.events.dlq.v1"

	// SchemaVersion is the version of the record format written to
	// [HeaderSchema]. A reader rejects versions it does not know.
	SchemaVersion = 1

	// HeaderTenant is the record header that carries the tenant ID.
	HeaderTenant = "abacus-tenant"

	// HeaderSchema is the record header that carries [SchemaVersion] in decimal.
	HeaderSchema = "abacus-schema"
)

// schemaValue is SchemaVersion as written to HeaderSchema.
var schemaValue = strconv.Itoa(SchemaVersion)

// traceContext is the W3C Trace Context propagator (traceparent, tracestate).
// It is used directly rather than the global propagator so that the record
// format does not depend on how the process configured OpenTelemetry: with no
// active span it writes nothing, with one it always writes traceparent.
var traceContext propagation.TraceContext

// NewRecord builds the record for one batch of tenant's events: key and
// [HeaderTenant] = tenant, value = batch encoded with tenant_id = tenant,
// [HeaderSchema], and the trace context of ctx. batch is not modified.
//
// It fails when tenant is not a valid ID, when batch is nil, or when batch
// already names a different tenant; all of these are programming errors.
func NewRecord(ctx context.Context, tenant tenancy.ID, batch *eventlogv1.Batch) (*kgo.Record, error) {
	return NewShardRecord(ctx, tenant, 0, batch)
}

// NewShardRecord is NewRecord for one of the tenant's shards (0 ≤ shard < tenancy.MaxKafkaShards):
// the record key names the tenant and the shard; see shard.go.
func NewShardRecord(ctx context.Context, tenant tenancy.ID, shard int, batch *eventlogv1.Batch) (*kgo.Record, error) {
	if shard < 0 || shard >= tenancy.MaxKafkaShards {
		return nil, fmt.Errorf("eventlog: new record: shard %d out of range", shard)
	}
	if _, err := tenancy.ParseID(string(tenant)); err != nil {
		return nil, fmt.Errorf("eventlog: new record: %w", err)
	}
	if batch == nil {
		return nil, errors.New("eventlog: new record: nil batch")
	}
	if id := batch.GetTenantId(); id != "" && id != string(tenant) {
		return nil, fmt.Errorf("eventlog: new record: batch is for tenant %q, not %q", id, tenant)
	}
	// A fresh message sharing the events, so the caller's batch is untouched.
	value, err := proto.Marshal(&eventlogv1.Batch{
		TenantId:     string(tenant),
		Events:       batch.GetEvents(),
		ReceivedTime: batch.GetReceivedTime(),
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog: new record: encode batch: %w", err)
	}
	r := &kgo.Record{
		Topic: Topic,
		Key:   recordKey(tenant, shard),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderTenant, Value: []byte(tenant)},
			{Key: HeaderSchema, Value: []byte(schemaValue)},
		},
	}
	// r.Timestamp stays zero: the producer stamps it with the time of
	// produce, which is also what its delivery timeout counts from.
	traceContext.Inject(ctx, (*headerCarrier)(&r.Headers))
	return r, nil
}

// Decode checks and decodes a record written by [NewRecord]. It returns the
// tenant and the batch when the schema header is [SchemaVersion] and the
// tenant header, the key and the batch's tenant_id are the same valid tenant
// ID. Otherwise the error wraps [ErrPoison] and says why; such a record can
// never be processed and belongs in [DeadLetterTopic].
//
// Decode does not validate the events themselves; the writer did.
func Decode(r *kgo.Record) (tenancy.ID, *eventlogv1.Batch, error) {
	if r == nil {
		return "", nil, poison("nil record")
	}
	schema, err := singleHeader(r.Headers, HeaderSchema)
	if err != nil {
		return "", nil, err
	}
	if string(schema) != schemaValue {
		return "", nil, poison("header %s is %s, want %d", HeaderSchema, quote(schema), SchemaVersion)
	}

	header, err := singleHeader(r.Headers, HeaderTenant)
	if err != nil {
		return "", nil, err
	}
	tenant, err := tenancy.ParseID(string(header))
	if err != nil {
		return "", nil, poison("header %s: %v", HeaderTenant, err)
	}
	key, _, err := parseRecordKey(r.Key)
	if err != nil {
		return "", nil, poison("key %s: %v", quote(r.Key), err)
	}
	if key != string(tenant) {
		return "", nil, poison("key %s does not match header %s %q", quote(r.Key), HeaderTenant, tenant)
	}

	batch := new(eventlogv1.Batch)
	if err := proto.Unmarshal(r.Value, batch); err != nil {
		return "", nil, poison("value is not an encoded Batch: %v", err)
	}
	if batch.GetTenantId() != string(tenant) {
		return "", nil, poison("batch tenant_id %s does not match header %s %q", quote([]byte(batch.GetTenantId())), HeaderTenant, tenant)
	}
	return tenant, batch, nil
}

// ExtractTraceContext returns ctx extended with the trace context the writer
// injected into r, so a reader's span can continue the writer's trace.
func ExtractTraceContext(ctx context.Context, r *kgo.Record) context.Context {
	return traceContext.Extract(ctx, (*headerCarrier)(&r.Headers))
}

// singleHeader returns the value of the header named key, which must appear
// exactly once: a duplicated header is ambiguous, so it is poison too.
func singleHeader(headers []kgo.RecordHeader, key string) ([]byte, error) {
	var (
		value []byte
		n     int
	)
	for _, h := range headers {
		if h.Key == key {
			value = h.Value
			n++
		}
	}
	switch n {
	case 0:
		return nil, poison("missing header %s", key)
	case 1:
		return value, nil
	default:
		return nil, poison("header %s appears %d times", key, n)
	}
}

func poison(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPoison, fmt.Sprintf(format, args...))
}

// quote formats untrusted bytes for an error message: quoted (so the message
// stays valid UTF-8) and cut short, so hostile input cannot bloat logs.
func quote(b []byte) string {
	const limit = 64
	if len(b) > limit {
		return fmt.Sprintf("%q... (%d bytes)", b[:limit], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// headerCarrier adapts record headers to the OpenTelemetry TextMapCarrier.
type headerCarrier []kgo.RecordHeader

var _ propagation.TextMapCarrier = (*headerCarrier)(nil)

// Get returns the value of the first header named key.
func (c *headerCarrier) Get(key string) string {
	for _, h := range *c {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header named key, or appends it.
func (c *headerCarrier) Set(key, value string) {
	for i, h := range *c {
		if h.Key == key {
			(*c)[i].Value = []byte(value)
			return
		}
	}
	*c = append(*c, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys returns the header names.
func (c *headerCarrier) Keys() []string {
	keys := make([]string, len(*c))
	for i, h := range *c {
		keys[i] = h.Key
	}
	return keys
}
