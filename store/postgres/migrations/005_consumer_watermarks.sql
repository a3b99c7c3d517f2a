-- 005: the watermark of each consumed partition. A text/template evaluated by
-- Migrate, like 001 (this file has nothing layout-specific).
--
-- watermark is a time before which every event accepted into the partition
-- has been applied: the rollup consumer listed the partition's end offset at
-- that time and has since applied up to it. NULL until the first such
-- proof. The minimum over a topic's partitions is the watermark of every
-- query answer (DB.Watermark).
ALTER TABLE consumer_offsets ADD COLUMN watermark timestamptz;
