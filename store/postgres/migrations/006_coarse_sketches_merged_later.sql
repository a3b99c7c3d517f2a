-- 006: the unique-user sketches of the hourly and daily rollups are merged
-- from the finer rollups after the fact, not in every batch's transaction. A
-- text/template evaluated by Migrate, like 001 (nothing here is
-- layout-specific).
--
-- A busy hour or day has a dense sketch (64 KiB). Merging every batch into it
-- under the row's lock read, merged and rewrote those bytes for every row a
-- batch touched, which cost more than the rest of the batch. Now a batch adds
-- its users to the minute sketches only and marks the hour and day rows it
-- touched users_pending; DB.MergeCoarseSketches, run every second by the
-- rollup consumers, rebuilds the pending hours from their minutes and the
-- pending days from their hours. Counts and values stay exact in the batch's
-- transaction, and a query of a pending bucket merges the finer sketches
-- itself, so unique users are never behind either.
ALTER TABLE rollups_1h ADD COLUMN users_pending boolean NOT NULL DEFAULT false;
ALTER TABLE rollups_1d ADD COLUMN users_pending boolean NOT NULL DEFAULT false;

-- The merge finds the pending rows through these; they stay small, since
-- only recently changed buckets are pending.
CREATE INDEX rollups_1h_users_pending_idx ON rollups_1h (tenant_id, event_type, bucket) WHERE users_pending;
CREATE INDEX rollups_1d_users_pending_idx ON rollups_1d (tenant_id, event_type, bucket) WHERE users_pending;
