package eventlog

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// TestEncodedRecordsDecodeAsBatches: records built from encoded events are
// the records NewShardRecord would build — same key, headers and batch —
// split below MaxRecordBytes, each user in one shard, order kept.
func TestEncodedRecordsDecodeAsBatches(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 5, 1, 12, 0, 1, 5, time.UTC)
	var events []*ingestv1.Event
	for i := range 300 {
		v := float64(i)
		events = append(events, &ingestv1.Event{
			EventId: fmt.Sprintf("e%04d", i), Type: "view", UserId: fmt.Sprintf("u%d", i%30),
			Properties: map[string]string{"blob": strings.Repeat("x", 10_000)}, Value: &v,
		})
	}
	encoded, err := EncodeEvents(&eventlogv1.Batch{Events: events})
	require.NoError(t, err)

	for _, shards := range []int{1, 4} {
		records, err := encodedRecords(t.Context(), "acme", shards, received, encoded)
		require.NoError(t, err)
		require.Greater(t, len(records), 3, "3 MB of events: split")
		var got []*ingestv1.Event
		userShard := map[string]string{}
		for _, r := range records {
			require.LessOrEqual(t, len(r.Value), MaxRecordBytes)
			tenant, batch, err := Decode(r)
			require.NoError(t, err)
			require.Equal(t, tenancy.ID("acme"), tenant)
			require.True(t, batch.GetReceivedTime().AsTime().Equal(received))
			for _, ev := range batch.GetEvents() {
				if k, ok := userShard[ev.GetUserId()]; ok {
					require.Equal(t, k, string(r.Key), "a user stays in one shard")
				}
				userShard[ev.GetUserId()] = string(r.Key)
				// The same shard as the decoded path picks.
				require.Equal(t, string(recordKey("acme", shardOf(ev, shards))), string(r.Key))
			}
			got = append(got, batch.GetEvents()...)
		}
		require.Len(t, got, len(events))
		if shards == 1 {
			for i := range got {
				require.True(t, proto.Equal(events[i], got[i]), "event %d", i)
			}
		}
	}
}

func TestEncodedRecordsRefuseWhatCannotBeWritten(t *testing.T) {
	t.Parallel()
	_, err := encodedRecords(t.Context(), "not a tenant!", 1, time.Now(), []EncodedEvent{{Data: []byte{}}})
	require.Error(t, err)
	_, err = encodedRecords(t.Context(), "acme", 1, time.Now(), []EncodedEvent{{Data: make([]byte, MaxRecordBytes)}})
	require.ErrorContains(t, err, "does not fit")
}
