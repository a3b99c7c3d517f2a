package eventlog_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// spanContext returns ctx carrying a fixed remote span, as an instrumented
// gRPC handler's context would.
func spanContext(ctx context.Context) (context.Context, trace.SpanContext) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	return trace.ContextWithSpanContext(ctx, sc), sc
}

func header(r *kgo.Record, key string) (string, bool) {
	i := slices.IndexFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == key })
	if i < 0 {
		return "", false
	}
	return string(r.Headers[i].Value), true
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKafka(t)
	ctx, sc := spanContext(t.Context())
	tenant := tenancy.ID("acme")
	batch := sampleBatch("rt", 3)

	r, err := eventlog.NewRecord(ctx, tenant, batch)
	require.NoError(t, err)
	require.Empty(t, batch.GetTenantId(), "NewRecord must not modify its input")
	require.Equal(t, eventlog.Topic, r.Topic)
	require.Equal(t, []byte("acme"), r.Key)
	tp, ok := header(r, "traceparent")
	require.True(t, ok, "traceparent header")
	require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", tp)

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.ProduceSync(t.Context(), r).FirstErr())

	got := readRecords(t, k.Brokers())
	require.Len(t, got, 1)
	gotTenant, gotBatch, err := eventlog.Decode(got[0])
	require.NoError(t, err)
	require.Equal(t, tenant, gotTenant)
	want := proto.CloneOf(batch)
	want.TenantId = "acme"
	requireProtoEqual(t, want, gotBatch)
	v, _ := header(got[0], eventlog.HeaderSchema)
	require.Equal(t, "1", v)

	// The reader continues the writer's trace.
	rc := trace.SpanContextFromContext(eventlog.ExtractTraceContext(t.Context(), got[0]))
	require.Equal(t, sc.TraceID(), rc.TraceID())
	require.Equal(t, sc.SpanID(), rc.SpanID())
}

func TestNewRecordWithoutSpanHasNoTraceHeader(t *testing.T) {
	t.Parallel()
	r, err := eventlog.NewRecord(t.Context(), "acme", sampleBatch("x", 1))
	require.NoError(t, err)
	_, ok := header(r, "traceparent")
	require.False(t, ok)
}

func TestNewRecordErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tenant tenancy.ID
		batch  *eventlogv1.Batch
		want   string
	}{
		{"invalid tenant", "Not A Tenant", sampleBatch("x", 1), "invalid tenant ID"},
		{"empty tenant", "", sampleBatch("x", 1), "invalid tenant ID"},
		{"nil batch", "acme", nil, "nil batch"},
		{"batch of another tenant", "acme", &eventlogv1.Batch{TenantId: "globex"}, `batch is for tenant "globex"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := eventlog.NewRecord(t.Context(), tt.tenant, tt.batch)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// goodRecord is a valid record of tenant acme, as NewRecord writes it.
func goodRecord(t testing.TB) *kgo.Record {
	r, err := eventlog.NewRecord(context.Background(), "acme", sampleBatch("p", 2))
	require.NoError(t, err)
	return r
}

func setHeader(r *kgo.Record, key, value string) {
	for i := range r.Headers {
		if r.Headers[i].Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func dropHeader(r *kgo.Record, key string) {
	r.Headers = slices.DeleteFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == key })
}

func TestDecodeRejectsPoison(t *testing.T) {
	t.Parallel()
	encode := func(b *eventlogv1.Batch) []byte {
		v, err := proto.Marshal(b)
		require.NoError(t, err)
		return v
	}
	tests := []struct {
		name   string
		mutate func(*kgo.Record)
		want   string
	}{
		{"missing schema header", func(r *kgo.Record) { dropHeader(r, eventlog.HeaderSchema) }, "missing header abacus-schema"},
		{"unknown schema version", func(r *kgo.Record) { setHeader(r, eventlog.HeaderSchema, "2") }, `abacus-schema is "2", want 1`},
		{"garbage schema header", func(r *kgo.Record) { setHeader(r, eventlog.HeaderSchema, "\xff\x00") }, "abacus-schema is"},
		{"duplicate schema header", func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: eventlog.HeaderSchema, Value: []byte("1")})
		}, "abacus-schema appears 2 times"},
		{"missing tenant header", func(r *kgo.Record) { dropHeader(r, eventlog.HeaderTenant) }, "missing header abacus-tenant"},
		{"invalid tenant header", func(r *kgo.Record) { setHeader(r, eventlog.HeaderTenant, "ACME!") }, "header abacus-tenant"},
		{"duplicate tenant header", func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: eventlog.HeaderTenant, Value: []byte("globex")})
		}, "abacus-tenant appears 2 times"},
		{"tenant header differs from key", func(r *kgo.Record) { setHeader(r, eventlog.HeaderTenant, "globex") }, `key "acme" does not match header abacus-tenant "globex"`},
		{"key differs from header", func(r *kgo.Record) { r.Key = []byte("globex") }, `key "globex" does not match`},
		{"missing key", func(r *kgo.Record) { r.Key = nil }, `key "" does not match`},
		{"body tenant differs", func(r *kgo.Record) {
			b := sampleBatch("p", 1)
			b.TenantId = "globex"
			r.Value = encode(b)
		}, `batch tenant_id "globex" does not match`},
		{"body without tenant", func(r *kgo.Record) { r.Value = encode(sampleBatch("p", 1)) }, `batch tenant_id "" does not match`},
		{"garbage value", func(r *kgo.Record) { r.Value = []byte{0xff, 0xff, 0xff, 0xff} }, "value is not an encoded Batch"},
		{"truncated value", func(r *kgo.Record) { r.Value = r.Value[:len(r.Value)-3] }, "value is not an encoded Batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := goodRecord(t)
			tt.mutate(r)
			tenant, batch, err := eventlog.Decode(r)
			require.ErrorIs(t, err, eventlog.ErrPoison)
			require.ErrorContains(t, err, tt.want)
			require.Empty(t, tenant)
			require.Nil(t, batch)
		})
	}
	t.Run("nil record", func(t *testing.T) {
		t.Parallel()
		_, _, err := eventlog.Decode(nil)
		require.ErrorIs(t, err, eventlog.ErrPoison)
	})
}

// FuzzDecode: arbitrary keys, values and headers never panic Decode, and
// whatever it accepts has one consistent, valid tenant.
func FuzzDecode(f *testing.F) {
	good := goodRecord(f)
	f.Add(good.Key, good.Value, []byte("acme"), []byte("1"), true, true, false)
	f.Add([]byte("acme"), []byte{}, []byte("acme"), []byte("1"), true, true, true)
	f.Add([]byte{}, []byte{0x0a, 0x04, 'a', 'c', 'm', 'e'}, []byte{}, []byte("01"), false, true, false)
	f.Add([]byte("a/b"), []byte{0x12, 0xff}, []byte("a/b"), []byte("\xff"), true, false, true)
	f.Fuzz(func(t *testing.T, key, value, tenantHdr, schemaHdr []byte, withTenant, withSchema, dup bool) {
		r := &kgo.Record{Key: key, Value: value}
		if withTenant {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: eventlog.HeaderTenant, Value: tenantHdr})
		}
		if withSchema {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: eventlog.HeaderSchema, Value: schemaHdr})
		}
		if dup {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: eventlog.HeaderTenant, Value: tenantHdr})
		}
		tenant, batch, err := eventlog.Decode(r)
		if err != nil {
			require.ErrorIs(t, err, eventlog.ErrPoison)
			require.Nil(t, batch)
			return
		}
		_, perr := tenancy.ParseID(string(tenant))
		require.NoError(t, perr)
		require.Equal(t, string(tenant), string(key))
		require.Equal(t, string(tenant), string(tenantHdr))
		require.Equal(t, string(tenant), batch.GetTenantId())
	})
}

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	require.True(t, proto.Equal(want, got), "want:\n%v\ngot:\n%v", prototext.Format(want), prototext.Format(got))
}
