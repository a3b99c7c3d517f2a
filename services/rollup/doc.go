// Package rollup is the consumer that turns the event log ([eventlog.Topic])
// into the 1-minute rollups, counting every distinct accepted
// (tenant, event_id) exactly once whatever crashes, rebalances, replays and
// client retries happen (ARCHITECTURE.md, invariant 3).
//
// # One transaction per poll
//
// A [Consumer] polls up to Config.MaxPollRecords records (each an ingest
// batch of one tenant's events), across all of its partitions, and hands them
// to [Store.ApplyBatch] as one [postgres.Batch]. That single database
// transaction claims each event's (tenant, event_id) in the dedup table,
// stores and rolls up only the events it claimed, and stores the offset after
// the last record of every partition in the batch. Either all of it commits
// or none of it does.
//
// # Why the database owns the offsets
//
// If offsets lived only in Kafka, a crash between the database commit and the
// Kafka commit would replay records (harmless only thanks to dedup), and a
// crash the other way round would skip them (lost events). Storing the
// offsets in the same transaction as the rows they produced makes "applied"
// and "consumed" the same fact. So when the group assigns a partition, the
// consumer starts it at the offset stored in the database (Kafka's committed
// offset is ignored; a partition the database has never seen starts at the
// beginning, because a new group must count every event ever accepted).
//
// Kafka commits are still made, after each committed batch, but they are
// advisory: they feed lag tooling and keep the group known to Kafka. Their
// failure is logged, never fatal, and rewinding or deleting them changes
// nothing.
//
// # Why the offsets are fenced
//
// Rebalancing moves partitions between members. A member that stalled (a
// long pause, a network partition) can wake up and try to commit a batch for
// a partition the group has since given to another member. Dedup keeps the
// counts right even then, but the stale member could move the stored offset
// backwards under the new owner. So every batch carries the consumer-group
// generation it was polled in, and the database refuses a batch (rolling back
// everything, returning [postgres.ErrFenced]) when a partition's stored
// offset was written by a newer generation. The fenced member drops the
// batch, rewinds its fetch positions to the batch's first records (so a
// partition it still owns is read again, not skipped), and keeps polling
// until the rebalance tells it what it still owns.
//
// The Kafka client blocks rebalances between a poll and AllowRebalance
// (kgo.BlockRebalanceOnPoll), so in the normal case a member applies a batch
// while it provably owns every partition in it, and the generation it reads
// after polling is the one the records were assigned in.
//
// # Failures
//
//   - Poison records (undecodable, unknown schema, tenant copies that
//     disagree, or an event the database would refuse) are produced to
//     [eventlog.DeadLetterTopic] with the reason and their source position
//     in headers ([HeaderDeadLetterReason] and friends), and their offsets
//     advance in the same transaction as the rest of the batch. They never
//     block their partition. Dead-lettering is at least once.
//   - A failing database (or dead-letter topic) is retried with the same
//     batch and a capped exponential backoff; the consumer polls nothing
//     more, never exits, logs once when the outage starts and once when it
//     ends, and sets abacus_rollup_db_failing. If the group wants to
//     rebalance meanwhile, the batch is abandoned (its positions rewound) so
//     the rebalance can proceed.
//   - On shutdown the batch in flight is abandoned: its transaction either
//     committed together with its offsets or left no trace, so the next owner
//     resumes at exactly the right place.
package rollup
