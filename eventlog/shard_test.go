package eventlog

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestRecordKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, "acme", string(recordKey("acme", 0)), "shard 0 keeps the plain tenant key")
	require.Equal(t, "acme/7", string(recordKey("acme", 7)))
	for _, tc := range []struct {
		key    string
		tenant string
		shard  int
		bad    bool
	}{
		{key: "acme", tenant: "acme"},
		{key: "acme/7", tenant: "acme", shard: 7},
		{key: "acme/0", bad: true},
		{key: "acme/07", bad: true},
		{key: "acme/-1", bad: true},
		{key: "acme/x", bad: true},
		{key: fmt.Sprintf("acme/%d", tenancy.MaxKafkaShards), bad: true},
	} {
		tenant, shard, err := parseRecordKey([]byte(tc.key))
		if tc.bad {
			require.Error(t, err, tc.key)
			continue
		}
		require.NoError(t, err, tc.key)
		require.Equal(t, tc.tenant, tenant)
		require.Equal(t, tc.shard, shard)
	}
}

func TestShardRecordsDecode(t *testing.T) {
	t.Parallel()
	batch := &eventlogv1.Batch{TenantId: "acme", Events: []*ingestv1.Event{{EventId: "e1", Type: "t"}}}
	r, err := NewShardRecord(t.Context(), "acme", 5, batch)
	require.NoError(t, err)
	require.Equal(t, "acme/5", string(r.Key))
	tenant, got, err := Decode(r)
	require.NoError(t, err)
	require.Equal(t, tenancy.ID("acme"), tenant)
	require.Len(t, got.GetEvents(), 1)

	r.Key = []byte("other/5")
	_, _, err = Decode(r)
	require.ErrorIs(t, err, ErrPoison, "a key naming another tenant is poison")
	_, err = NewShardRecord(t.Context(), "acme", tenancy.MaxKafkaShards, batch)
	require.Error(t, err)
}

func TestShardBatchKeepsEachUserTogetherAndInOrder(t *testing.T) {
	t.Parallel()
	var events []*ingestv1.Event
	for i := range 400 {
		events = append(events, &ingestv1.Event{EventId: fmt.Sprintf("e%03d", i), UserId: fmt.Sprintf("u%d", i%40)})
	}
	batch := &eventlogv1.Batch{TenantId: "acme", Events: events}

	parts := map[int][]*ingestv1.Event{}
	for shard, part := range shardBatch(batch, 8) {
		require.Equal(t, "acme", part.GetTenantId())
		parts[shard] = part.GetEvents()
	}
	require.Greater(t, len(parts), 4, "40 users spread over most of 8 shards")
	total := 0
	userShard := map[string]int{}
	for shard, evs := range parts {
		total += len(evs)
		for i, ev := range evs {
			if s, ok := userShard[ev.GetUserId()]; ok {
				require.Equal(t, s, shard, "a user's events stay in one shard")
			}
			userShard[ev.GetUserId()] = shard
			if i > 0 {
				require.Less(t, evs[i-1].GetEventId(), ev.GetEventId(), "order is kept within a shard")
			}
		}
	}
	require.Equal(t, 400, total)

	for shard, part := range shardBatch(batch, 1) {
		require.Equal(t, 0, shard)
		require.Same(t, batch, part, "one shard: the batch as it is")
	}
}

// FuzzParseRecordKey: arbitrary keys never panic, and what parses round-trips.
func FuzzParseRecordKey(f *testing.F) {
	for _, s := range []string{"acme", "acme/1", "acme/255", "a/b/c", "/", "acme/"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		tenant, shard, err := parseRecordKey(key)
		if err != nil {
			return
		}
		if _, perr := tenancy.ParseID(tenant); perr == nil {
			require.Equal(t, string(key), string(recordKey(tenancy.ID(tenant), shard)))
		}
	})
}
