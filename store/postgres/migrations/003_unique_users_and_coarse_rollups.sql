-- 003: unique-user sketches, and hourly and daily rollups next to the
-- 1-minute ones. A text/template evaluated by Migrate, like 001; .Timescale
-- makes the new tables hypertables.
--
-- users_hll is a HyperLogLog sketch of the bucket's user IDs in the binary
-- form of github.com/axiomhq/hyperloglog (precision 16, users hashed with
-- XXH64; see store/postgres/sketch.go), NULL while no event of the bucket had
-- a user ID. PostgreSQL cannot merge sketches, so ApplyBatch merges them in
-- Go under the row locks of its upsert.
--
-- STORAGE EXTERNAL: a sketch too big to stay in the row (over about 2 kB) is
-- stored out of line uncompressed. Sparse sketches hardly compress, and
-- every batch rewrites the sketches it touches, so trying would cost CPU on
-- the hottest write path for little space.
ALTER TABLE rollups_1m ADD COLUMN users_hll bytea;
ALTER TABLE rollups_1m ALTER COLUMN users_hll SET STORAGE EXTERNAL;

-- Every batch updates the rollup rows it touches (twice when it merges a
-- sketch). Free space in each page lets those be HOT updates, which add no
-- index entries; it applies to pages written from now on.
ALTER TABLE rollups_1m SET (fillfactor = 70);

-- rollups_1h and rollups_1d hold exactly what rollups_1m holds, per UTC hour
-- and UTC day, written by the same ApplyBatch transaction from the same new
-- events, so a query of whole hours or days reads one row per bucket.
CREATE TABLE rollups_1h (
    tenant_id   text             COLLATE "C" NOT NULL,
    event_type  text             COLLATE "C" NOT NULL,
    bucket      timestamptz      NOT NULL,
    event_count bigint           NOT NULL,
    value_sum   double precision NOT NULL DEFAULT 0,
    value_count bigint           NOT NULL DEFAULT 0,
    value_min   double precision,
    value_max   double precision,
    users_hll   bytea,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_type, bucket)
) WITH (fillfactor = 70);

CREATE TABLE rollups_1d (
    tenant_id   text             COLLATE "C" NOT NULL,
    event_type  text             COLLATE "C" NOT NULL,
    bucket      timestamptz      NOT NULL,
    event_count bigint           NOT NULL,
    value_sum   double precision NOT NULL DEFAULT 0,
    value_count bigint           NOT NULL DEFAULT 0,
    value_min   double precision,
    value_max   double precision,
    users_hll   bytea,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_type, bucket)
) WITH (fillfactor = 70);

ALTER TABLE rollups_1h ALTER COLUMN users_hll SET STORAGE EXTERNAL;
ALTER TABLE rollups_1d ALTER COLUMN users_hll SET STORAGE EXTERNAL;

{{ if .Timescale -}}
-- Like rollups_1m: the primary keys contain bucket, as a hypertable's unique
-- indexes must. Chunk intervals grow with the bucket width, so that a chunk
-- holds a few thousand rows per series at most, as a 7-day chunk of
-- rollups_1m does (10,080 minutes).
SELECT create_hypertable('rollups_1h', by_range('bucket', INTERVAL '90 days'),
                         create_default_indexes => FALSE);
SELECT create_hypertable('rollups_1d', by_range('bucket', INTERVAL '1 year'),
                         create_default_indexes => FALSE);
{{- end }}

-- Existing minutes roll up into their hours and days. Their events predate
-- user sketches, so those rows have none: unique users are counted from the
-- events applied after this migration.
INSERT INTO rollups_1h (tenant_id, event_type, bucket, event_count, value_sum, value_count,
                        value_min, value_max, updated_at)
SELECT tenant_id, event_type, date_trunc('hour', bucket, 'UTC'), sum(event_count), sum(value_sum),
       sum(value_count), min(value_min), max(value_max), max(updated_at)
FROM rollups_1m
GROUP BY 1, 2, 3;

INSERT INTO rollups_1d (tenant_id, event_type, bucket, event_count, value_sum, value_count,
                        value_min, value_max, updated_at)
SELECT tenant_id, event_type, date_trunc('day', bucket, 'UTC'), sum(event_count), sum(value_sum),
       sum(value_count), min(value_min), max(value_max), max(updated_at)
FROM rollups_1m
GROUP BY 1, 2, 3;
