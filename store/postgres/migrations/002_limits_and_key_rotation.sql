-- 002: per-tenant limit overrides and API key rotation. A text/template
-- evaluated by Migrate, like 001 (it uses no template data).

-- The tenant's overrides of the operator's default limits, as the JSON
-- encoding of tenancy.LimitOverrides: only overridden limits are present, so
-- '{}' means "defaults only" and existing tenants start there. Durations are
-- integer nanoseconds.
ALTER TABLE tenants
    ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT tenants_limits_object_check CHECK (jsonb_typeof(limits) = 'object');

-- The key that replaced this one in a rotation, which also marks the key as
-- rotated: a key is rotated at most once. A successor always belongs to the
-- same tenant (RotateAPIKey creates it under the old key's tenant), so
-- deleting a tenant deletes both and SET NULL never leaves a dangling name.
ALTER TABLE api_keys
    ADD COLUMN replaced_by text COLLATE "C"
        CONSTRAINT api_keys_replaced_by_fkey REFERENCES api_keys (key_id) ON DELETE SET NULL;
