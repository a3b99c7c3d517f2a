package ingest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/tenancy"
)

// recordingProducer acknowledges every write at once and counts each
// event_id it was given, per tenant.
type recordingProducer struct {
	mu  sync.Mutex
	ids map[tenancy.ID]map[string]int
}

func (r *recordingProducer) ProduceEncoded(_ context.Context, tenant tenancy.ID, _ time.Time, events []eventlog.EncodedEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[tenancy.ID]map[string]int{}
	}
	if r.ids[tenant] == nil {
		r.ids[tenant] = map[string]int{}
	}
	for _, ev := range events {
		r.ids[tenant][string(ev.ShardKey)]++ // the events below have no user: the key is the event_id
	}
	return nil
}

func (r *recordingProducer) count(tenant tenancy.ID) (events, distinct int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.ids[tenant] {
		events += n
	}
	return events, len(r.ids[tenant])
}

// tenantLimits gives each named tenant its own limits, the rest the defaults.
type tenantLimits map[tenancy.ID]tenancy.Limits

func (t tenantLimits) For(id tenancy.ID) tenancy.Limits {
	if l, ok := t[id]; ok {
		return l
	}
	return tenancy.DefaultLimits()
}

// limitedService is an ingest service rate limited through a real limiter
// on the test's Redis.
func limitedService(t *testing.T, limits tenantLimits) (*ingest.Service, *recordingProducer) {
	t.Helper()
	opts, err := redis.ParseURL(devstacktest.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	// A generous Redis timeout: these tests measure the shared limit, not
	// the per-node fallback a loaded test machine could otherwise trigger.
	lim, err := ratelimit.New(rdb, ratelimit.Config{RedisTimeout: 2 * time.Second}, nil, nil)
	require.NoError(t, err)
	quota, err := ratelimit.NewQuota(rdb, ratelimit.QuotaConfig{RedisTimeout: 2 * time.Second}, nil, nil)
	require.NoError(t, err)
	admitter, err := ratelimit.NewAdmitter(lim, quota)
	require.NoError(t, err)
	p := &recordingProducer{}
	svc, err := ingest.New(ingest.Config{Limits: limits, Admitter: admitter, Quota: quota}, p, nil, nil)
	require.NoError(t, err)
	return svc, p
}

func limitsOf(eventsPerSecond float64, burst int64) tenancy.Limits {
	l := tenancy.DefaultLimits()
	l.EventsPerSecond, l.EventsBurst = eventsPerSecond, burst
	l.RequestsPerSecond = 1000
	return l
}

// sendAt sends batches of size events for tenant every interval until d has
// passed, and returns the verdicts and the time it took. ids start at first.
func sendAt(t *testing.T, svc *ingest.Service, tenant tenancy.ID, size int, interval, d time.Duration) (accepted int, rejected []*ingestv1.RejectedEvent, elapsed time.Duration) {
	t.Helper()
	ctx := tenancy.NewContext(t.Context(), tenant)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	seq := 0
	for time.Since(start) < d {
		events := make([]*ingestv1.Event, size)
		for i := range events {
			events[i] = &ingestv1.Event{EventId: fmt.Sprintf("%s-%d", tenant, seq), Type: "tick", Timestamp: timestamppb.Now()}
			seq++
		}
		resp, err := svc.Ingest(ctx, &ingestv1.IngestRequest{Events: events})
		var te *ingest.ThrottledError
		switch {
		case err == nil:
			accepted += int(resp.GetAccepted())
			rejected = append(rejected, resp.GetRejected()...)
		case errorAs(err, &te):
			rejected = append(rejected, te.Rejected...)
		default:
			require.NoError(t, err)
		}
		<-tick.C
	}
	return accepted, rejected, time.Since(start)
}

func errorAs(err error, target **ingest.ThrottledError) bool {
	te, ok := err.(*ingest.ThrottledError)
	if ok {
		*target = te
	}
	return ok
}

// TestRateLimitAccuracy: a tenant limited to 1,000 events/s with a burst of
// 2,000 that sends 5,000 events/s for 10 s gets limit × time + burst
// accepted, within 10 %; every other event is throttled with a retry delay.
func TestRateLimitAccuracy(t *testing.T) {
	t.Parallel()
	svc, p := limitedService(t, tenantLimits{"acme": limitsOf(1000, 2000)})
	accepted, rejected, elapsed := sendAt(t, svc, "acme", 50, 10*time.Millisecond, 10*time.Second)

	want := 1000*elapsed.Seconds() + 2000
	t.Logf("accepted %d of %d in %s; expected %.0f", accepted, accepted+len(rejected), elapsed.Round(time.Millisecond), want)
	require.InEpsilon(t, want, float64(accepted), 0.10)
	require.Greater(t, len(rejected), accepted, "sent at 5x the limit")
	for _, r := range rejected {
		require.Equal(t, ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, r.GetReason())
		require.Positive(t, r.GetRetryAfter().AsDuration(), "every throttle carries a retry delay")
	}
	events, distinct := p.count("acme")
	require.Equal(t, accepted, events, "written = accepted")
	require.Equal(t, accepted, distinct)
}

// TestClientHonouringRetryDelaysGetsEverythingAccepted: a client that sends
// at 5x its limit and resends each throttled event after its retry delay
// ends with every event accepted exactly once.
func TestClientHonouringRetryDelaysGetsEverythingAccepted(t *testing.T) {
	t.Parallel()
	const total = 6000
	svc, p := limitedService(t, tenantLimits{"patient": limitsOf(1000, 2000)})
	ctx := tenancy.NewContext(t.Context(), "patient")

	type pending struct {
		ev  *ingestv1.Event
		due time.Time
	}
	var queue []pending
	for i := range total {
		queue = append(queue, pending{ev: &ingestv1.Event{EventId: fmt.Sprintf("p-%d", i), Type: "tick", Timestamp: timestamppb.Now()}})
	}
	accepted := 0
	deadline := time.Now().Add(time.Minute)
	for len(queue) > 0 {
		require.True(t, time.Now().Before(deadline), "%d events still throttled after a minute", len(queue))
		// Send up to 50 events whose delay has passed, at most every 10ms
		// (5,000 events/s), as a client library would.
		now := time.Now()
		var batch []*ingestv1.Event
		var rest []pending
		for _, q := range queue {
			if len(batch) < 50 && !q.due.After(now) {
				batch = append(batch, q.ev)
			} else {
				rest = append(rest, q)
			}
		}
		queue = rest
		if len(batch) == 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		resp, err := svc.Ingest(ctx, &ingestv1.IngestRequest{Events: batch})
		var rejected []*ingestv1.RejectedEvent
		var te *ingest.ThrottledError
		switch {
		case err == nil:
			accepted += int(resp.GetAccepted())
			rejected = resp.GetRejected()
		case errorAs(err, &te):
			rejected = te.Rejected
		default:
			require.NoError(t, err)
		}
		for _, r := range rejected {
			require.Equal(t, ingestv1.RejectReason_REJECT_REASON_RATE_LIMITED, r.GetReason())
			delay := r.GetRetryAfter().AsDuration()
			require.Positive(t, delay)
			queue = append(queue, pending{ev: batch[r.GetIndex()], due: time.Now().Add(delay)})
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, total, accepted)
	events, distinct := p.count("patient")
	require.Equal(t, total, events, "each event written once")
	require.Equal(t, total, distinct)
}

// TestNoisyNeighbour: one tenant sending at 50x its limit does not cost a
// well-behaved tenant a single throttle.
func TestNoisyNeighbour(t *testing.T) {
	t.Parallel()
	svc, _ := limitedService(t, tenantLimits{
		"noisy": limitsOf(100, 100),
		"quiet": limitsOf(1000, 1000),
	})
	var wg sync.WaitGroup
	var noisyRejected, quietRejected []*ingestv1.RejectedEvent
	var quietAccepted int
	wg.Go(func() {
		_, noisyRejected, _ = sendAt(t, svc, "noisy", 50, 10*time.Millisecond, 3*time.Second) // 5,000/s = 50x
	})
	wg.Go(func() {
		quietAccepted, quietRejected, _ = sendAt(t, svc, "quiet", 20, 50*time.Millisecond, 3*time.Second) // 400/s
	})
	wg.Wait()
	require.NotEmpty(t, noisyRejected, "the noisy tenant is throttled")
	require.Empty(t, quietRejected, "the quiet tenant never is")
	require.Positive(t, quietAccepted)
}
