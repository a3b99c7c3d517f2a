// Package admin implements abacus.admin.v1.AdminService, the operator's API
// for tenants and their API keys.
//
// # Whose tenant
//
// Every other service takes its tenant from authentication only (see package
// tenancy). The admin API is the one place where the tenant comes from the
// request: its caller is the operator, authenticated by the admin token before
// a handler runs, and choosing which tenant to manage is the point of the API.
// Handlers turn the request's tenant_id into a [tenancy.ID] with
// [tenancy.ParseID] and pass it explicitly from then on.
//
// # Keys and secrets
//
// CreateApiKey generates a key with auth.GenerateKey, stores only its hash and
// returns the secret once, in that response. No other response, log line or
// error carries a secret or a hash. Key creation, rotation and revocation are
// logged at info level with tenant_id and key_id as an audit trail of operator
// actions.
//
// RotateApiKey issues the successor the same way and, in one store
// transaction, gives it the old key's scopes, display name and expiry and sets
// the old key to expire when the grace period ends (24 hours unless the
// request says otherwise, 0 for at once, at most 30 days). A key is rotated
// once; rotating a revoked, expired or already rotated key is
// postgres.ErrFailedPrecondition. Every ApiKey carries last_used_time to the
// minute, as recorded by the authentication layer.
//
// # Limits
//
// A tenant's limits field holds its overrides of the operator's defaults,
// only the overridden fields set. UpdateTenant changes them with the mask path
// limits (the request's limits become the overrides) or limits.<field> (one
// override, removed when the request leaves the field unset). The request's
// values are checked against the proto's rules, then the effective limits
// (tenancy.DefaultLimits with the resulting overrides) against
// tenancy.Limits.Validate, and every problem is named in one INVALID_ARGUMENT:
// against the override that is invalid even alone over the defaults, or else
// against tenant.limits as a whole. Rules relating two limits (the raw
// retention covers the past window, the rollup retention the raw one) judge
// the combination, so a raw retention beyond the default rollup retention is
// accepted together with a longer rollup retention.
// The read-modify-write runs in one transaction under the tenant's row lock
// (postgres.DB.UpdateTenantFunc): two operators changing different limits of
// one tenant at once both keep their change, and validation sees exactly what
// is written. Every node picks the new overrides up through
// tenancy.Overrides within its refresh interval.
//
// # Paging
//
// List RPCs follow AIP-158: page_size 0 means 100, larger values are capped at
// 1000, and next_page_token is empty on the last page. The token is opaque to
// clients; it is the unpadded base64url encoding of the last identifier of the
// page (tenant_id or key_id), so a page ends and the next begins at a stable
// position however rows are added meanwhile.
//
// # Errors
//
// Handlers return the store's domain errors wrapped with the operation
// (postgres.ErrNotFound, postgres.ErrAlreadyExists,
// postgres.ErrFailedPrecondition, postgres.ErrInvalidArgument)
// for the server's error-mapping interceptor to translate. Request problems the
// proto's validation rules cannot express are returned directly as
// INVALID_ARGUMENT statuses with an errdetails.BadRequest naming the field.
package admin
