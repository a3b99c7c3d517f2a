package main

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// The shape of the workload that is not a flag.
const (
	// lateRatio of the events are late: their time is up to maxLateness before their place in
	// the stream.
	lateRatio   = 0.01
	maxLateness = 6 * time.Hour
	// duplicateRatio of the events produced are an earlier event of the same tenant produced
	// again, as a client's retry would.
	duplicateRatio = 0.01
	// historySize is how many of a tenant's earlier events a duplicate is drawn from: the
	// first ones, then each new event replaces one at random.
	historySize = 1024
)

// eventTypes are the event types of the workload with their weights.
var eventTypes = []struct {
	name   string
	weight int
}{
	{"page_view", 40}, {"click", 25}, {"search", 15}, {"checkout.completed", 10}, {"signup", 5}, {"app.error", 5},
}

// Values of the two properties every event carries.
var (
	plans     = []string{"free", "pro", "team", "enterprise"}
	countries = []string{"NZ", "AU", "US", "GB", "DE", "FR", "JP", "BR"}
)

// workload describes the events the consumer benchmark produces. The same workload (seed
// included) yields the same events, apart from times, which follow End.
type workload struct {
	// RunID is part of every tenant and event id.
	RunID string
	// Events is the number of events produced, duplicates included.
	Events int
	// Tenants is the number of tenants; tenant i gets a share ∝ 1/(i+1)^TenantZipfS.
	Tenants     int
	TenantZipfS float64
	// Users per tenant; user rank r gets a share ∝ 1/(r+1)^UserZipfS.
	Users     int
	UserZipfS float64
	// BatchSize is the number of events of one tenant's batch, which ingest would write as one
	// record.
	BatchSize int
	// Span is how far back from End the events' times reach (late events reach further).
	Span time.Duration
	End  time.Time
	// Seed seeds the random choices.
	Seed uint64
}

// tenantID is the id of tenant i of the workload.
func (w workload) tenantID(i int) tenancy.ID {
	return tenancy.ID(fmt.Sprintf("rollup-%s-%02d", w.RunID, i+1))
}

// tenantIDs are the ids of every tenant of the workload.
func (w workload) tenantIDs() []tenancy.ID {
	ids := make([]tenancy.ID, w.Tenants)
	for i := range ids {
		ids[i] = w.tenantID(i)
	}
	return ids
}

// batch is one tenant's batch of events, as one ingest request would write it.
type batch struct {
	Tenant tenancy.ID
	Events []*ingestv1.Event
	// Duplicates and Late count the events of the batch that repeat an earlier event of the
	// tenant, and those whose time is late.
	Duplicates, Late int
}

// batches yields the workload in batches. Events are drawn one after the other in time order
// (the i-th at End - Span + i·Span/Events, or up to maxLateness earlier for a late one), each
// for a tenant drawn from the tenant distribution, and a tenant's events go out as a batch
// once it has BatchSize of them; what is left goes out at the end, tenant by tenant. A
// duplicate is one of the tenant's earlier events again, the same message, so it encodes to
// the same bytes. The batches and their events must not be modified.
func (w workload) batches() iter.Seq[batch] {
	return func(yield func(batch) bool) {
		rng := rand.New(rand.NewPCG(w.Seed, 0x726f6c6c7570))
		tenants := loadgen.NewZipf(w.Tenants, w.TenantZipfS)
		users := loadgen.NewZipf(w.Users, w.UserZipfS)
		pending := make([]batch, w.Tenants)
		history := make([][]*ingestv1.Event, w.Tenants)
		counters := make([]int, w.Tenants)
		start := w.End.Add(-w.Span)
		step := w.Span / time.Duration(max(w.Events, 1))
		for i := range w.Events {
			t := tenants.Pick(rng)
			b := &pending[t]
			if b.Events == nil {
				*b = batch{Tenant: w.tenantID(t), Events: make([]*ingestv1.Event, 0, w.BatchSize)}
			}
			h := history[t]
			if len(h) > 0 && rng.Float64() < duplicateRatio {
				b.Events = append(b.Events, h[rng.IntN(len(h))])
				b.Duplicates++
			} else {
				at := start.Add(time.Duration(i) * step)
				if rng.Float64() < lateRatio {
					at = at.Add(-time.Duration(rng.Int64N(int64(maxLateness))))
					b.Late++
				}
				ev := w.event(rng, t, counters[t], users.Pick(rng), at)
				counters[t]++
				b.Events = append(b.Events, ev)
				if len(h) < historySize {
					history[t] = append(h, ev)
				} else {
					h[rng.IntN(historySize)] = ev
				}
			}
			if len(b.Events) == w.BatchSize {
				if !yield(*b) {
					return
				}
				*b = batch{}
			}
		}
		for _, b := range pending {
			if len(b.Events) > 0 && !yield(b) {
				return
			}
		}
	}
}

// event is the n-th new event of tenant t, by user rank user, at time at.
func (w workload) event(rng *rand.Rand, t, n, user int, at time.Time) *ingestv1.Event {
	value := float64(rng.IntN(100_000)) / 100
	return &ingestv1.Event{
		EventId:   fmt.Sprintf("%s-%02d-%010d", w.RunID, t+1, n),
		Type:      pickType(rng),
		UserId:    fmt.Sprintf("user-%06d", user),
		SessionId: fmt.Sprintf("sess-%06d-%d", user, at.Unix()/1800), // a session per user and half hour
		Timestamp: timestamppb.New(at),
		Properties: map[string]string{
			"plan":    plans[user%len(plans)],
			"country": countries[rng.IntN(len(countries))],
		},
		Value: &value,
	}
}

// pickType draws an event type by weight.
func pickType(rng *rand.Rand) string {
	total := 0
	for _, t := range eventTypes {
		total += t.weight
	}
	r := rng.IntN(total)
	for _, t := range eventTypes {
		if r < t.weight {
			return t.name
		}
		r -= t.weight
	}
	return eventTypes[len(eventTypes)-1].name
}
