-- 001: tenants, API keys, raw events with their dedup keys, 1-minute rollups
-- and consumer offsets. A text/template evaluated by Migrate; .Timescale
-- selects hypertables (TimescaleDB >= 2.13, by_range) over plain tables.
-- Every table holding tenant data leads its keys with tenant_id. Identifier
-- columns use the "C" collation: keys compare bytewise (memcmp instead of the
-- locale's much slower strcoll on every index insert) and sort the
-- same on every server whatever its locale.

{{ if .Timescale -}}
CREATE EXTENSION IF NOT EXISTS timescaledb;
{{- end }}

CREATE TABLE tenants (
    tenant_id    text        COLLATE "C" PRIMARY KEY,
    display_name text        NOT NULL,
    state        text        NOT NULL DEFAULT 'active'
                             CONSTRAINT tenants_state_check CHECK (state IN ('active', 'suspended')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- key_id is globally unique because authentication finds the key (and so the
-- tenant) from the presented secret's key ID alone.
CREATE TABLE api_keys (
    key_id       text        COLLATE "C" PRIMARY KEY,
    tenant_id    text        COLLATE "C" NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    secret_hash  bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Serves ListAPIKeys' keyset pagination and the tenant_id foreign key.
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at, key_id);

-- The exactly-once key. It lives apart from events because a unique index on
-- a hypertable must contain its time column, and (tenant_id, event_id) must be
-- unique whatever the event time says.
CREATE TABLE event_dedup (
    tenant_id   text        COLLATE "C" NOT NULL,
    event_id    text        COLLATE "C" NOT NULL,
    event_time  timestamptz NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);

-- Raw events, written only for events that won their event_dedup row.
CREATE TABLE events (
    tenant_id   text             COLLATE "C" NOT NULL,
    event_id    text             COLLATE "C" NOT NULL,
    event_type  text             COLLATE "C" NOT NULL,
    user_id     text             NOT NULL DEFAULT '',
    session_id  text             NOT NULL DEFAULT '',
    event_time  timestamptz      NOT NULL,
    received_at timestamptz      NOT NULL,
    properties  jsonb            NOT NULL DEFAULT '{}',
    value       double precision
);

CREATE INDEX events_tenant_type_time_idx ON events (tenant_id, event_type, event_time);

{{ if .Timescale -}}
-- Our composite index serves every tenant query; Timescale's default
-- (event_time) index would only slow ingest.
SELECT create_hypertable('events', by_range('event_time', INTERVAL '1 day'),
                         create_default_indexes => FALSE);
{{- end }}

-- Count, sum, min and max per tenant, event type and UTC minute. A value_*
-- column aggregates only events that carried a value (value_count of them).
CREATE TABLE rollups_1m (
    tenant_id   text             COLLATE "C" NOT NULL,
    event_type  text             COLLATE "C" NOT NULL,
    bucket      timestamptz      NOT NULL,
    event_count bigint           NOT NULL,
    value_sum   double precision NOT NULL DEFAULT 0,
    value_count bigint           NOT NULL DEFAULT 0,
    value_min   double precision,
    value_max   double precision,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_type, bucket)
);

{{ if .Timescale -}}
-- The primary key contains bucket, as a hypertable's unique indexes must.
SELECT create_hypertable('rollups_1m', by_range('bucket', INTERVAL '7 days'),
                         create_default_indexes => FALSE);
{{- end }}

-- Kafka offsets committed in the same transaction as the rows they produced.
-- generation fences a consumer that lost its partitions (see ApplyBatch).
CREATE TABLE consumer_offsets (
    group_id    text        COLLATE "C" NOT NULL,
    topic       text        COLLATE "C" NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    generation  integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
