package eventlog_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/tenancy"
)

// afterDeadline bounds how long a test waits for a call that must return by
// its context's deadline: generous, so a slow machine does not fail the test,
// yet finite, so a hang fails it instead of timing out the whole run.
const afterDeadline = 15 * time.Second

func TestProducerConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  eventlog.ProducerConfig
		want []string
	}{
		{"defaults with brokers", eventlog.ProducerConfig{Brokers: []string{"localhost:9092"}}, nil},
		{"no brokers", eventlog.ProducerConfig{}, []string{"Brokers is empty"}},
		{"every problem at once", eventlog.ProducerConfig{
			Brokers:          []string{"localhost"},
			MaxBufferedBytes: 1024,
			Linger:           -time.Second,
			DeliveryTimeout:  -time.Second,
		}, []string{`broker "localhost" is not host:port`, "MaxBufferedBytes is 1024", "Linger is -1s", "DeliveryTimeout is -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			_, err = eventlog.NewProducer(tt.cfg, nil, nil)
			require.Error(t, err)
		})
	}
}

func TestNewProducerDoesNotConnect(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: New succeeds anyway, Ping says unavailable.
	p := newProducer(t, []string{"127.0.0.1:1"}, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Ping(ctx), eventlog.ErrUnavailable)
}

func TestProduceReturnsAfterAcknowledgement(t *testing.T) {
	t.Parallel()
	k := newKafka(t)
	p := newProducer(t, k.Brokers(), prometheus.NewRegistry(), nil)
	require.NoError(t, p.Ping(t.Context()))

	batch := sampleBatch("ack", 5)
	require.NoError(t, p.Produce(t.Context(), "acme", batch))
	// Asked right away, without waiting: the record is in the log.
	require.EqualValues(t, 1, endOffset(t, k.Brokers(), eventlog.Topic))

	records := readRecords(t, k.Brokers())
	require.Len(t, records, 1)
	tenant, got, err := eventlog.Decode(records[0])
	require.NoError(t, err)
	require.Equal(t, tenancy.ID("acme"), tenant)
	want := proto.CloneOf(batch)
	want.TenantId = "acme"
	requireProtoEqual(t, want, got)
}

func TestProduceNothing(t *testing.T) {
	t.Parallel()
	p := newProducer(t, []string{"127.0.0.1:1"}, nil, nil)
	require.NoError(t, p.Produce(t.Context(), "acme", &eventlogv1.Batch{}))
	require.Error(t, p.Produce(t.Context(), "acme", nil))
}

func TestProduceSplitsLargeBatches(t *testing.T) {
	t.Parallel()
	k := newKafka(t)
	p := newProducer(t, k.Brokers(), nil, nil)

	// ~2.5 MB of events: three records or more, none above the limit.
	batch := sampleBatch("big", 0)
	for i := range 100 {
		ev := sampleEvent(fmt.Sprintf("big-%03d", i))
		ev.Properties["blob"] = strings.Repeat("x", 25_000)
		batch.Events = append(batch.Events, ev)
	}
	require.NoError(t, p.Produce(t.Context(), "acme", batch))

	records := readRecords(t, k.Brokers())
	require.GreaterOrEqual(t, len(records), 3)
	var events []*ingestv1.Event
	for _, r := range records {
		require.LessOrEqual(t, len(r.Value), eventlog.MaxRecordBytes)
		tenant, b, err := eventlog.Decode(r)
		require.NoError(t, err)
		require.Equal(t, tenancy.ID("acme"), tenant)
		requireProtoEqual(t, batch.GetReceivedTime(), b.GetReceivedTime())
		events = append(events, b.GetEvents()...)
	}
	require.Len(t, events, len(batch.Events))
	for i := range events {
		requireProtoEqual(t, batch.Events[i], events[i]) // all there, in order
	}
}

func TestProduceWhenKafkaIsUnavailable(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"hang", "refuse"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			k := newKafka(t)
			reg := prometheus.NewRegistry()
			p := newProducer(t, k.Brokers(), reg, nil)
			require.NoError(t, p.Produce(t.Context(), "acme", sampleBatch("before", 1))) // connected, producer ID assigned
			sw := installSwitch(t, k.Cluster())
			if mode == "hang" {
				sw.hang()
			} else {
				sw.refuse()
			}

			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Produce(ctx, "acme", sampleBatch("during", 1)) }()
			select {
			case err := <-done:
				require.ErrorIs(t, err, eventlog.ErrUnavailable)
				require.NotErrorIs(t, err, context.DeadlineExceeded, "callers must see unavailable, not a deadline")
				require.Error(t, ctx.Err(), "Produce returned before its deadline without an acknowledgement")
			case <-time.After(2*time.Second + afterDeadline):
				t.Fatal("Produce did not return after its deadline")
			}
			require.Equal(t, 1.0, counter(t, reg, "abacus_eventlog_produced_records_total", "abandoned"))

			sw.heal()
			require.NoError(t, p.Produce(t.Context(), "acme", sampleBatch("after", 1)))
			// The record given up on may still have been written; that is
			// what dedup in the rollup is for. Nothing else appeared.
			records := readRecords(t, k.Brokers())
			require.GreaterOrEqual(t, len(records), 2)
			require.LessOrEqual(t, len(records), 3)
		})
	}
}

func TestProduceFailsFastWhenBufferIsFull(t *testing.T) {
	t.Parallel()
	k := newKafka(t)
	reg := prometheus.NewRegistry()
	p := newProducer(t, k.Brokers(), reg, func(c *eventlog.ProducerConfig) { c.MaxBufferedBytes = 1 << 20 })
	require.NoError(t, p.Produce(t.Context(), "acme", sampleBatch("warmup", 1)))
	sw := installSwitch(t, k.Cluster())
	sw.hang()

	big := func(prefix string) *eventlogv1.Batch {
		b := sampleBatch(prefix, 1)
		b.Events[0].Properties["blob"] = strings.Repeat("x", 600<<10)
		return b
	}
	// The first big batch fills most of the buffer and waits for the broker.
	first := make(chan error, 1)
	go func() { first <- p.Produce(t.Context(), "acme", big("first")) }()
	buffered := gauge(t, reg, "abacus_eventlog_buffered_bytes")
	require.Eventually(t, func() bool { return buffered() > 600<<10 }, afterDeadline, 10*time.Millisecond)

	// The second does not fit: it fails at once, long before its deadline.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := p.Produce(ctx, "acme", big("second"))
	require.ErrorIs(t, err, eventlog.ErrUnavailable)
	require.ErrorContains(t, err, "buffer is full")
	require.NoError(t, ctx.Err())
	require.Equal(t, 1.0, counter(t, reg, "abacus_eventlog_produced_records_total", "buffer_full"))

	sw.heal()
	select {
	case err := <-first:
		require.NoError(t, err)
	case <-time.After(afterDeadline):
		t.Fatal("first Produce did not finish after the broker recovered")
	}
	require.NoError(t, p.Produce(t.Context(), "acme", big("third")))
}

func TestCloseFlushesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	k := newKafka(t)
	reg := prometheus.NewRegistry()
	p, err := eventlog.NewProducer(eventlog.ProducerConfig{Brokers: k.Brokers()}, nil, reg)
	require.NoError(t, err)
	require.NoError(t, p.Produce(t.Context(), "acme", sampleBatch("c", 1)))
	require.NoError(t, p.Close(t.Context()))
	require.NoError(t, p.Close(t.Context()))
	err = p.Produce(t.Context(), "acme", sampleBatch("closed", 1))
	require.ErrorIs(t, err, eventlog.ErrUnavailable)
	// Metrics are unregistered, so a new producer can use the registry.
	p2, err := eventlog.NewProducer(eventlog.ProducerConfig{Brokers: k.Brokers()}, nil, reg)
	require.NoError(t, err)
	require.NoError(t, p2.Close(t.Context()))
}

func TestEnsureTopicsIsIdempotent(t *testing.T) {
	t.Parallel()
	k := devstacktest.Kafka(t)
	for range 2 {
		require.NoError(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), 3, 1))
	}
	topics := listTopics(t, k.Brokers())
	require.Equal(t, 3, topics[eventlog.Topic])
	require.Equal(t, 3, topics[eventlog.DeadLetterTopic])

	require.ErrorContains(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), 0, 1), "partitions is 0")
	require.ErrorContains(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), 1, 0), "replication is 0")
	require.Error(t, eventlog.EnsureTopics(t.Context(), nil, 1, 1))
}

// gauge reads the single gauge called name from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) func() float64 {
	return func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
}

// counter reads the value of the counter called name with the label value.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

// listTopics returns the partition count of every topic.
func listTopics(t *testing.T, brokers []string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(t.Context())
	require.NoError(t, err)
	out := map[string]int{}
	for name, d := range details {
		require.NoError(t, d.Err)
		out[name] = len(d.Partitions)
	}
	return out
}
