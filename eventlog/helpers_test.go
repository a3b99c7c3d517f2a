package eventlog_test

import (
	"context"
	"errors"
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
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

// newKafka starts a fresh broker with the event log topics.
func newKafka(t *testing.T) *devstack.Kafka {
	t.Helper()
	k := devstacktest.Kafka(t)
	require.NoError(t, eventlog.EnsureTopics(t.Context(), k.Brokers(), 1, 1))
	return k
}

// newProducer returns a producer for brokers, closed at the end of the test.
func newProducer(t *testing.T, brokers []string, reg prometheus.Registerer, edit func(*eventlog.ProducerConfig)) *eventlog.Producer {
	t.Helper()
	cfg := eventlog.ProducerConfig{Brokers: brokers, ClientID: t.Name()}
	if edit != nil {
		edit(&cfg)
	}
	p, err := eventlog.NewProducer(cfg, nil, reg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// endOffset is the number of records in partition 0 of topic, asked of the
// broker right now (no waiting).
func endOffset(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), topic)
	require.NoError(t, err)
	o, ok := offsets.Lookup(topic, 0)
	require.True(t, ok)
	require.NoError(t, o.Err)
	return o.Offset
}

// readRecords reads every record of the event log topic written so far.
func readRecords(t *testing.T, brokers []string) []*kgo.Record {
	t.Helper()
	want := endOffset(t, brokers, eventlog.Topic)
	var got []*kgo.Record
	if want == 0 {
		return got
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(eventlog.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for int64(len(got)) < want {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(got), want)
		fetches.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		got = append(got, fetches.Records()...)
	}
	return got
}

func sampleEvent(id string) *ingestv1.Event {
	v := 12.5
	return &ingestv1.Event{
		EventId:    id,
		Type:       "page_view",
		UserId:     "user-1",
		SessionId:  "session-1",
		Timestamp:  timestamppb.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)),
		Properties: map[string]string{"plan": "pro", "path": "/pricing"},
		Value:      &v,
	}
}

func sampleBatch(prefix string, n int) *eventlogv1.Batch {
	b := &eventlogv1.Batch{ReceivedTime: timestamppb.New(time.Date(2026, 5, 1, 12, 0, 1, 0, time.UTC))}
	for i := range n {
		b.Events = append(b.Events, sampleEvent(fmt.Sprintf("%s-%d", prefix, i)))
	}
	return b
}

// brokerSwitch makes the broker hang (hold produce requests unanswered) or
// refuse (drop the connection on) produce requests until healed.
type brokerSwitch struct {
	mode    atomic.Value // "", "hang" or "refuse"
	release chan struct{}
	heal1   sync.Once
}

// installSwitch adds the switch to c; it is healed at the end of the test.
func installSwitch(t *testing.T, c *kfake.Cluster) *brokerSwitch {
	t.Helper()
	s := &brokerSwitch{release: make(chan struct{})}
	s.mode.Store("")
	t.Cleanup(s.heal)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		switch s.mode.Load() {
		case "hang":
			c.SleepControl(func() { <-s.release })
			return nil, nil, false // then answered normally
		case "refuse":
			c.KeepControl()
			return nil, errors.New("test: broker refuses produce requests"), true
		}
		return nil, nil, false
	})
	return s
}

func (s *brokerSwitch) hang()   { s.mode.Store("hang") }
func (s *brokerSwitch) refuse() { s.mode.Store("refuse") }

// heal answers the held requests and lets every later one through. A switch
// heals once.
func (s *brokerSwitch) heal() {
	s.heal1.Do(func() {
		s.mode.Store("")
		close(s.release)
	})
}
