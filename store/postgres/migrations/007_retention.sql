-- 007: what per-tenant retention (DB.EnforceRetention) needs. A text/template
-- evaluated by Migrate, like 001; .Timescale selects the TimescaleDB part.

-- Retention deletes each tenant's dedup keys older than its raw retention,
-- 10,000 per statement: with this index each statement is a range scan of
-- expired keys, without it a scan of all of the tenant's keys. event_dedup
-- exists where the dedup key is not part of events (the TimescaleDB layout:
-- a hypertable's unique index must contain its time column). Building the
-- index blocks writes to event_dedup while it runs; for a large table,
-- create it beforehand with
--   CREATE INDEX CONCURRENTLY event_dedup_tenant_time_idx ON event_dedup (tenant_id, event_time);
-- and this migration keeps it.
DO $$
BEGIN
    IF to_regclass('event_dedup') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS event_dedup_tenant_time_idx ON event_dedup (tenant_id, event_time);
    END IF;
END
$$;

-- Raw retention (90 days unless overridden) must now be at least a tenant's
-- timestamp past window plus a day, and limit overrides that break a rule are
-- ignored as a whole. A tenant whose stored past window is longer than 89
-- days gets the shortest raw retention it allows, so that its overrides stay
-- in force; operators may raise it like any limit. Durations are stored as
-- integer nanoseconds.
UPDATE tenants
SET limits = limits || jsonb_build_object('raw_retention',
        (limits -> 'timestamp_past_window')::numeric + 86400000000000)
WHERE jsonb_typeof(limits -> 'timestamp_past_window') = 'number'
  AND NOT limits ? 'raw_retention'
  AND (limits -> 'timestamp_past_window')::numeric + 86400000000000 > 7776000000000000;

{{ if .Timescale -}}
-- Raw events compress per tenant in event-time order. Retention filters on
-- exactly those two columns, which TimescaleDB applies to compressed data
-- batch by batch, and a tenant's events are mostly read by time.
ALTER TABLE events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant_id',
    timescaledb.compress_orderby = 'event_time'
);

-- A chunk is compressed once it ended 30 days ago. Ingest writes an event
-- into the chunk of its event time, which may be as old as the tenant's
-- timestamp past window (7 days by default, at most 366) plus the time the
-- event waits in Kafka: 30 days keeps the default window and a long consumer
-- backlog away from compressed chunks, so ingest normally writes only
-- uncompressed ones. A tenant with a longer window still can: TimescaleDB
-- (2.11 and newer) accepts inserts and deletes on compressed chunks, at some
-- cost per statement. Raw events are kept 90 days by default, so most of
-- them live compressed, until their chunks are dropped whole once every
-- tenant's retention has passed them.
SELECT add_compression_policy('events', compress_after => INTERVAL '30 days');
{{- end }}
