// Package rollup is the consumer that turns the event log ([eventlog.Topic])
// into the 1-minute, 1-hour and 1-day rollups, counting every distinct accepted
// (tenant, event_id) exactly once whatever crashes, rebalances, replays and
// client retries happen (ARCHITECTURE.md, invariant 3).
//
// # One transaction per batch
//
// A [Consumer] polls up to Config.MaxPollRecords records (each an ingest
// batch of one tenant's events), across all of its partitions, divides the
// poll's partitions among Config.ApplyLanes lanes that run at once, and
// hands each lane's records to [Store.ApplyBatch] as one [postgres.Batch] (or
// several in order, when they hold more than Config.MaxBatchEvents events).
// That single database transaction claims each event's (tenant, event_id) in
// its unique index, stores and rolls up only the events it claimed, and
// stores the offset after the last record of every partition in the batch.
// Either all of it commits or none of it does. A partition is in one lane
// only, so its batches commit in offset order.
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
// # Why the offsets are fenced, and partitions claimed
//
// Rebalancing moves partitions between members. A member that stalled (a
// long pause, a network partition) can wake up and try to commit a batch for
// a partition the group has since given to another member. Dedup keeps the
// counts right even then, but the stale member could move the stored offset
// backwards under the new owner, and a stale member's write must be refused,
// not merely harmless. So every batch carries the consumer-group generation
// it was polled in, and the database refuses a batch (rolling back
// everything, returning [postgres.ErrFenced]) when a partition's stored
// offset was written by a newer generation. The fenced member drops the
// batch, rewinds its fetch positions to the batch's first records (so a
// partition it still owns is read again, not skipped), and keeps polling
// until the rebalance tells it what it still owns.
//
// Fencing by the stored generation alone has a gap: until the new owner
// applies its first batch of a partition, the highest generation stored for
// it is still the previous owner's, so nothing refuses that owner's late
// commit (and a partition without new records may stay in that state for
// ever). So a member claims the partitions it is assigned before reading any
// of them ([postgres.DB.ClaimPartitions]): one statement stores its
// generation on their offset rows and returns the offsets it resumes from.
// From then on every batch of an older generation is refused. A stale
// member's batch that is committing at that moment holds the rows' locks, so
// the claim waits for it and resumes after it; no batch of the old owner can
// commit between the new owner's reading of the offsets and its claim.
//
// The Kafka client blocks rebalances between a poll and AllowRebalance
// (kgo.BlockRebalanceOnPoll), so in the normal case a member applies a batch
// while it provably owns every partition in it, and the generation it reads
// after polling is the one the records were assigned in.
//
// # Change notifications
//
// When Config.Notifier is set, the rollup buckets each committed batch
// changed ([postgres.Applied].Buckets) go to it: [RedisNotifier] publishes
// them on one Redis channel per tenant ([ChangesChannel]) in the format
// documented at [ChangesChannelPrefix], for caches and live watchers. It runs
// on a goroutine of its own behind a bounded queue that merges repeats, so a
// slow or failing Redis never delays or fails a batch; what cannot be
// delivered is dropped, logged once per outage and counted
// (abacus_rollup_notify_failures_total). Notifications are hints: readers
// must expire what they cache anyway.
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
//
// # Watermarks and sketches
//
// Every Config.WatermarkInterval the consumer lists its partitions' end
// offsets; once the position stored in the database reaches an offset listed
// at time T, every event acknowledged into that partition before T is
// applied, and T is stored as the partition's watermark (fenced by
// generation, never moved back). The earliest watermark of the topic is the
// watermark of every query answer ([postgres.DB.Watermark]).
//
// Every Config.SketchInterval it merges the unique-user sketches that batches
// left pending in the hourly and daily rollups
// ([postgres.DB.MergeCoarseSketches]); any number of consumers may do so at
// once, and a batch never waits for it.
//
// # Metrics
//
// abacus_rollup_partition_lag is the records between the database's offset
// and the end of each partition this member owns, set after every batch and
// refreshed from the brokers every Config.LagInterval, so it keeps growing
// while the consumer is stalled. rate(abacus_rollup_events_total[1m]) is the
// committed processing rate; abacus_rollup_events_per_second is the same
// over the last lag interval, for status pages.
// abacus_rollup_watermark_age_seconds is how far the stored watermarks trail
// the clock. The rest count batches, records, failures, fenced batches,
// claims, notifications and sketch merges; metrics.go lists them.
//
// # How it is proven
//
// The package's tests run the consumer against a real PostgreSQL and an
// in-process Kafka-protocol broker and require exact per-bucket totals after
// SIGKILLs of a consumer process at random moments and between the
// database and Kafka commits (through Config.AfterApply), replays (client
// retries, rewound and deleted Kafka commits, a second group), members
// joining and leaving and a member whose heartbeats stop reaching the
// coordinator while it works, a database outage, and broker restarts.
package rollup
