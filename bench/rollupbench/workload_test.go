package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

func testWorkload(events int, seed uint64) workload {
	return workload{
		RunID: "testrun", Events: events, Tenants: 5, TenantZipfS: 1.1, Users: 100, UserZipfS: 1,
		BatchSize: 50, Span: time.Hour, End: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), Seed: seed,
	}
}

func TestWorkload_Batches(t *testing.T) {
	t.Parallel()
	w := testWorkload(20_000, 7)
	var total, dups, late int
	full := map[tenancy.ID]int{}  // full batches per tenant
	short := map[tenancy.ID]int{} // batches below BatchSize per tenant
	ids := map[tenancy.ID]map[string]bool{}
	for b := range w.batches() {
		_, err := tenancy.ParseID(string(b.Tenant))
		require.NoError(t, err)
		require.NotEmpty(t, b.Events)
		require.LessOrEqual(t, len(b.Events), w.BatchSize)
		if len(b.Events) == w.BatchSize {
			full[b.Tenant]++
		} else {
			short[b.Tenant]++
		}
		if ids[b.Tenant] == nil {
			ids[b.Tenant] = map[string]bool{}
		}
		batchDups, batchLate := 0, 0
		for _, ev := range b.Events {
			require.True(t, strings.HasPrefix(ev.GetEventId(), "testrun-"), ev.GetEventId())
			at := ev.GetTimestamp().AsTime()
			require.False(t, at.After(w.End), "no event is in the future")
			require.False(t, at.Before(w.End.Add(-w.Span-maxLateness)), "no event is later than the span and the lateness")
			require.Len(t, ev.GetProperties(), 2)
			require.NotNil(t, ev.Value)
			require.NotEmpty(t, ev.GetUserId())
			if ids[b.Tenant][ev.GetEventId()] {
				batchDups++
				continue
			}
			ids[b.Tenant][ev.GetEventId()] = true
			if at.Before(w.End.Add(-w.Span)) {
				batchLate++
			}
		}
		require.Equal(t, b.Duplicates, batchDups, "a duplicate repeats an id the tenant produced before")
		require.LessOrEqual(t, batchLate, b.Late, "late events counted (a late one may still fall inside the span)")
		total += len(b.Events)
		dups += b.Duplicates
		late += b.Late
	}
	require.Equal(t, w.Events, total)
	require.InDelta(t, duplicateRatio*float64(w.Events), float64(dups), 0.3*duplicateRatio*float64(w.Events))
	require.InDelta(t, lateRatio*float64(w.Events-dups), float64(late), 0.3*lateRatio*float64(w.Events))
	distinct := 0
	for tenant, set := range ids {
		distinct += len(set)
		require.LessOrEqual(t, short[tenant], 1, "only a tenant's last batch is short")
	}
	require.Equal(t, w.Events-dups, distinct)
	require.Len(t, ids, w.Tenants)
	require.Greater(t, full[w.tenantID(0)], full[w.tenantID(w.Tenants-1)], "the first tenant gets the most events")
}

func TestWorkload_SameSeedSameEvents(t *testing.T) {
	t.Parallel()
	eventIDs := func(w workload) []string {
		var out []string
		for b := range w.batches() {
			for _, ev := range b.Events {
				out = append(out, string(b.Tenant)+"/"+ev.GetEventId()+"/"+ev.GetUserId()+"/"+ev.GetType())
			}
		}
		return out
	}
	a, b := eventIDs(testWorkload(3_000, 1)), eventIDs(testWorkload(3_000, 1))
	require.Equal(t, a, b)
	require.NotEqual(t, a, eventIDs(testWorkload(3_000, 2)))
}

func TestWorkload_StopsWhenAsked(t *testing.T) {
	t.Parallel()
	n := 0
	for range testWorkload(10_000, 3).batches() {
		n++
		if n == 3 {
			break
		}
	}
	require.Equal(t, 3, n)
}

func TestPickType(t *testing.T) {
	t.Parallel()
	w := testWorkload(5_000, 9)
	seen := map[string]int{}
	for b := range w.batches() {
		for _, ev := range b.Events {
			seen[ev.GetType()]++
		}
	}
	require.Len(t, seen, len(eventTypes), "every type occurs")
	require.Greater(t, seen["page_view"], seen["signup"])
}
