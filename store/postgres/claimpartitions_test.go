package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
)

func TestClaimPartitions(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()

	// New partitions start at 0, the start of the partition.
	got, err := db.ClaimPartitions(ctx, "rollup", topic, 3, []int32{1, 0, 1})
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 0, 1: 0}, got)

	_, err = db.ApplyBatch(ctx, postgres.Batch{Group: "rollup", Generation: 3, Events: []postgres.Event{event("acme", "e1", 0)},
		Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: 17}}})
	require.NoError(t, err)

	// A newer generation takes over where the old one stopped, and from then
	// on the old one is refused even before the new one applies anything.
	got, err = db.ClaimPartitions(ctx, "rollup", topic, 4, []int32{0, 1, 2})
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 17, 1: 0, 2: 0}, got)
	_, err = db.ApplyBatch(ctx, postgres.Batch{Group: "rollup", Generation: 3, Events: []postgres.Event{event("acme", "e2", 0)},
		Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: 18}}})
	require.ErrorIs(t, err, postgres.ErrFenced)

	// An older generation's claim is refused and changes nothing, not even
	// the partitions it could have had.
	_, err = db.ClaimPartitions(ctx, "rollup", topic, 3, []int32{2, 5})
	require.ErrorIs(t, err, postgres.ErrFenced)
	require.ErrorContains(t, err, topic+"/2")
	offsets, err := db.LoadOffsets(ctx, "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 17, 1: 0, 2: 0}, offsets)

	// Groups and topics are separate.
	got, err = db.ClaimPartitions(ctx, "other", topic, 1, []int32{0})
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 0}, got)

	_, err = db.ClaimPartitions(ctx, "", topic, 1, []int32{0})
	require.ErrorIs(t, err, postgres.ErrInvalidArgument)
	got, err = db.ClaimPartitions(ctx, "rollup", topic, 4, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestClaimPartitionsWaitsForACommittingBatch has the old owner's batch hold
// its offset rows while the new owner claims: the claim waits, returns the
// offset the batch committed, and the old owner's next batch is fenced. No
// batch of the old owner can slip in between the new owner's reading of the
// offsets and its claim.
func TestClaimPartitionsWaitsForACommittingBatch(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	_, err := db.ClaimPartitions(ctx, "rollup", topic, 1, []int32{0})
	require.NoError(t, err)

	// The old owner's transaction, in the middle of storing offset 50.
	tx, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `UPDATE consumer_offsets SET next_offset = 50 WHERE group_id = 'rollup' AND partition = 0`)
	require.NoError(t, err)

	claimed := make(chan map[int32]int64, 1)
	go func() {
		got, err := db.ClaimPartitions(ctx, "rollup", topic, 2, []int32{0})
		if err != nil {
			t.Error(err)
		}
		claimed <- got
	}()
	// The claim cannot finish while the row is locked.
	requireBlocked(t, db, claimed)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, map[int32]int64{0: 50}, <-claimed)

	_, err = db.ApplyBatch(ctx, postgres.Batch{Group: "rollup", Generation: 1,
		Offsets: []postgres.PartitionOffset{{Topic: topic, Partition: 0, NextOffset: 60}}})
	require.ErrorIs(t, err, postgres.ErrFenced)
}

// requireBlocked checks that nothing arrives on ch before a session of db's
// database waits for a lock.
func requireBlocked[T any](t *testing.T, db *postgres.DB, ch <-chan T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case v := <-ch:
			require.FailNow(t, "finished while it should wait for a lock", "%v", v)
		default:
		}
		var waiting bool
		require.NoError(t, db.Pool().QueryRow(t.Context(), `
SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting))
		if waiting {
			return
		}
		require.True(t, time.Now().Before(deadline), "no session waits for a lock")
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatermarks(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	w, err := db.Watermark(ctx, "rollup", topic)
	require.NoError(t, err)
	require.True(t, w.IsZero(), "no partition stored yet")

	_, err = db.ClaimPartitions(ctx, "rollup", topic, 1, []int32{0, 1})
	require.NoError(t, err)
	require.NoError(t, db.AdvanceWatermarks(ctx, "rollup", topic, 1, map[int32]time.Time{0: minute}))
	w, err = db.Watermark(ctx, "rollup", topic)
	require.NoError(t, err)
	require.True(t, w.IsZero(), "partition 1 has no watermark yet")

	require.NoError(t, db.AdvanceWatermarks(ctx, "rollup", topic, 1, map[int32]time.Time{1: minute.Add(time.Minute)}))
	w, err = db.Watermark(ctx, "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, minute, w, "the earliest partition's")

	// Never backwards; an old generation changes nothing; a new owner keeps
	// the watermark.
	require.NoError(t, db.AdvanceWatermarks(ctx, "rollup", topic, 1, map[int32]time.Time{0: minute.Add(-time.Hour)}))
	_, err = db.ClaimPartitions(ctx, "rollup", topic, 2, []int32{0, 1})
	require.NoError(t, err)
	require.NoError(t, db.AdvanceWatermarks(ctx, "rollup", topic, 1, map[int32]time.Time{0: minute.Add(time.Hour)}))
	w, err = db.Watermark(ctx, "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, minute, w)

	require.NoError(t, db.AdvanceWatermarks(ctx, "rollup", topic, 2, map[int32]time.Time{0: minute.Add(time.Hour)}))
	w, err = db.Watermark(ctx, "rollup", topic)
	require.NoError(t, err)
	require.Equal(t, minute.Add(time.Minute), w)

	w, err = db.Watermark(ctx, "other", topic)
	require.NoError(t, err)
	require.True(t, w.IsZero())
}
