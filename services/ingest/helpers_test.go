package ingest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/tenancy"
)

// afterDeadline bounds how long a test waits for something that must happen
// by a deadline: generous for slow machines, finite so a hang fails the test.
const afterDeadline = 15 * time.Second

// now is the fixed "current time" of every test service.
var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// env is an ingest service wired to a real producer and a fresh broker.
type env struct {
	svc      *ingest.Service
	kafka    *devstack.Kafka
	reg      *prometheus.Registry
	producer *countingProducer
}

func newEnv(t *testing.T, edit func(*ingest.Config)) *env {
	t.Helper()
	k := devstacktest.Kafka(t)
	require.NoError(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), 1, 1))
	p, err := eventlog.NewProducer(eventlog.ProducerConfig{Brokers: k.Brokers(), ClientID: t.Name()}, nil, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	cfg := ingest.Config{Now: func() time.Time { return now }}
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	cp := &countingProducer{next: p}
	svc, err := ingest.New(cfg, cp, nil, reg)
	require.NoError(t, err)
	return &env{svc: svc, kafka: k, reg: reg, producer: cp}
}

// withLimits returns a newEnv edit that gives every tenant the default limits
// changed by edit.
func withLimits(edit func(*tenancy.Limits)) func(*ingest.Config) {
	return func(c *ingest.Config) {
		l := tenancy.DefaultLimits()
		edit(&l)
		c.Limits = fixedLimits{l}
	}
}

// fixedLimits gives every tenant the same limits.
type fixedLimits struct{ l tenancy.Limits }

func (f fixedLimits) For(tenancy.ID) tenancy.Limits { return f.l }

// countingProducer counts Produce calls and the most ever in flight at once.
type countingProducer struct {
	next        ingest.Producer
	calls       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

func (c *countingProducer) ProduceEncoded(ctx context.Context, tenant tenancy.ID, received time.Time, events []eventlog.EncodedEvent) error {
	c.calls.Add(1)
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return c.next.ProduceEncoded(ctx, tenant, received, events)
}

// tenantCtx is a request context authenticated as tenant.
func tenantCtx(ctx context.Context, tenant tenancy.ID) context.Context {
	return tenancy.NewContext(ctx, tenant)
}

func validEvent(id string) *ingestv1.Event {
	return &ingestv1.Event{
		EventId:    id,
		Type:       "page_view",
		UserId:     "user-1",
		Timestamp:  timestamppb.New(now.Add(-time.Minute)),
		Properties: map[string]string{"plan": "pro"},
	}
}

func validEvents(prefix string, n int) []*ingestv1.Event {
	evs := make([]*ingestv1.Event, n)
	for i := range evs {
		evs[i] = validEvent(fmt.Sprintf("%s-%d", prefix, i))
	}
	return evs
}

// written returns every event in the event log so far, by event_id, and
// checks each record belongs to tenant.
func written(t *testing.T, k *devstack.Kafka, tenant tenancy.ID) map[string]*ingestv1.Event {
	t.Helper()
	out := map[string]*ingestv1.Event{}
	for _, r := range readRecords(t, k.Brokers()) {
		got, batch, err := eventlog.Decode(r)
		require.NoError(t, err)
		require.Equal(t, tenant, got)
		for _, ev := range batch.GetEvents() {
			out[ev.GetEventId()] = ev
		}
	}
	return out
}

func readRecords(t *testing.T, brokers []string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	offsets, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), eventlog.Topic)
	cl.Close()
	require.NoError(t, err)
	end, ok := offsets.Lookup(eventlog.Topic, 0)
	require.True(t, ok)
	require.NoError(t, end.Err)
	var got []*kgo.Record
	if end.Offset == 0 {
		return got
	}
	cl, err = kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(eventlog.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), afterDeadline)
	defer cancel()
	for int64(len(got)) < end.Offset {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(got), end.Offset)
		fetches.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fetches.Records()...)
	}
	return got
}

// brokerSwitch makes the broker hold produce requests unanswered until
// healed.
type brokerSwitch struct {
	hung    atomic.Bool
	release chan struct{}
	once    sync.Once
}

func hangProduce(t *testing.T, c *kfake.Cluster) *brokerSwitch {
	t.Helper()
	s := &brokerSwitch{release: make(chan struct{})}
	s.hung.Store(true)
	t.Cleanup(s.heal)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if s.hung.Load() {
			c.SleepControl(func() { <-s.release })
		}
		return nil, nil, false // answered normally (once released)
	})
	return s
}

func (s *brokerSwitch) heal() {
	s.once.Do(func() {
		s.hung.Store(false)
		close(s.release)
	})
}

// counter reads the counter called name with the label value.
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
