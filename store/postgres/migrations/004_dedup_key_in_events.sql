-- 004: on plain PostgreSQL, the exactly-once key moves into events. A
-- text/template evaluated by Migrate, like 001.
--
-- event_dedup held one row per counted event next to that event's row in
-- events: two heap rows and two index entries per event on the hottest write
-- path. A plain table can carry the key itself as its primary key, so the raw
-- row is the claim: ApplyBatch COPYs new events straight into events and the
-- primary key refuses a repeat. Every events row was written for a claimed
-- key, so the key is unique already and the constraint adds no rows.
--
-- A hypertable cannot do this (its unique indexes must contain the time
-- column, and an event ID must be unique whatever its event time says), so on
-- TimescaleDB event_dedup stays and nothing changes.
--
-- Run it with the rollup consumers stopped or upgraded: a consumer of an
-- older version needs event_dedup and fails (and retries) without it.
{{ if not .Timescale -}}
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (tenant_id, event_id);
DROP TABLE event_dedup;
{{- end }}
