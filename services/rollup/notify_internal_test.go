package rollup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestChangeQueue(t *testing.T) {
	t.Parallel()
	minute := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	b := func(tenant tenancy.ID, typ string, m int) postgres.ChangedBucket {
		return postgres.ChangedBucket{Tenant: tenant, Type: typ, Bucket: minute.Add(time.Duration(m) * time.Minute)}
	}
	q := newChangeQueue()
	require.Nil(t, q.take(), "empty")
	require.True(t, q.add(nil))

	// Repeats coalesce, in a batch and across batches, whatever the
	// location of the time; take returns them sorted and empties the queue.
	require.True(t, q.add([]postgres.ChangedBucket{b("globex", "page_view", 0), b("acme", "page_view", 1), b("acme", "page_view", 1)}))
	local := b("acme", "checkout", 0)
	local.Bucket = local.Bucket.In(time.FixedZone("x", 3600))
	require.True(t, q.add([]postgres.ChangedBucket{b("acme", "page_view", 1), local}))
	select {
	case <-q.wake:
	default:
		require.FailNow(t, "adding wakes the notifier")
	}
	require.Equal(t, []postgres.ChangedBucket{
		b("acme", "checkout", 0), b("acme", "page_view", 1), b("globex", "page_view", 0),
	}, q.take())
	require.Nil(t, q.take())

	// Bounded: what does not fit is dropped and reported; repeats of what
	// is queued still fit.
	full := make([]postgres.ChangedBucket, maxPendingChanges)
	for i := range full {
		full[i] = b("acme", "page_view", i)
	}
	require.True(t, q.add(full))
	require.True(t, q.add(full[:10]), "repeats of queued buckets")
	require.False(t, q.add([]postgres.ChangedBucket{b("acme", "page_view", -1)}))
	require.Len(t, q.take(), maxPendingChanges)
	require.True(t, q.add([]postgres.ChangedBucket{b("acme", "page_view", -1)}), "room again")
}
