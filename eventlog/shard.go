package eventlog

import (
	"fmt"
	"iter"
	"strconv"
	"strings"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// A tenant's events are spread over its shards so that a large tenant is not bound to one
// partition. The record key is the tenant for shard 0 (so a tenant with one shard, the default,
// keeps the plain tenant key) and "tenant/N" for shard N > 0. Kafka's key hashing maps the keys
// to partitions, and records of one key stay in order. An event's shard is a hash of its user_id
// (its event_id when it has none), so each end user's events stay in order in one shard.
// Raising a tenant's shard count moves some users to new shards from then on; ordering across
// that change is not kept, which does not affect counting (the rollup deduplicates per event and
// aggregates by event time).

// shardSeparator separates the tenant from the shard number in a record key.
const shardSeparator = "/"

// recordKey returns the record key of a tenant's shard.
func recordKey(tenant tenancy.ID, shard int) []byte {
	if shard == 0 {
		return []byte(tenant)
	}
	return []byte(string(tenant) + shardSeparator + strconv.Itoa(shard))
}

// parseRecordKey splits a record key into the tenant and shard it names.
func parseRecordKey(key []byte) (tenant string, shard int, err error) {
	tenant, num, found := strings.Cut(string(key), shardSeparator)
	if !found {
		return tenant, 0, nil
	}
	shard, err = strconv.Atoi(num)
	if err != nil || shard < 1 || shard >= tenancy.MaxKafkaShards || strconv.Itoa(shard) != num {
		return "", 0, fmt.Errorf("shard %q is not a number 1-%d", num, tenancy.MaxKafkaShards-1)
	}
	return tenant, shard, nil
}

// shardOf returns the shard of an event among n.
func shardOf(ev *ingestv1.Event, n int) int {
	if n <= 1 {
		return 0
	}
	if ev.GetUserId() != "" {
		return shardOfKey([]byte(ev.GetUserId()), n)
	}
	return shardOfKey([]byte(ev.GetEventId()), n)
}

// shardBatch yields the events of batch grouped by shard (keeping their order), each group as a
// Batch with the same tenant and received time.
func shardBatch(batch *eventlogv1.Batch, shards int) iter.Seq2[int, *eventlogv1.Batch] {
	return func(yield func(int, *eventlogv1.Batch) bool) {
		if shards <= 1 {
			yield(0, batch)
			return
		}
		groups := make(map[int][]*ingestv1.Event)
		var order []int
		for _, ev := range batch.GetEvents() {
			s := shardOf(ev, shards)
			if _, ok := groups[s]; !ok {
				order = append(order, s)
			}
			groups[s] = append(groups[s], ev)
		}
		for _, s := range order {
			part := &eventlogv1.Batch{TenantId: batch.GetTenantId(), Events: groups[s], ReceivedTime: batch.GetReceivedTime()}
			if !yield(s, part) {
				return
			}
		}
	}
}
