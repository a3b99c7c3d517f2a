package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

// APIKey is a row of the api_keys table. The secret itself is never stored,
// only its hash.
type APIKey struct {
	// ID is the key's public identifier, globally unique.
	ID string
	// Tenant owns the key.
	Tenant tenancy.ID
	// Hash is the hash of the secret. Only CreateAPIKey's result and
	// [KeyRecord] carry it; List and Revoke leave it nil so that admin code
	// paths never hold it.
	Hash []byte
	// Scopes are the granted scopes, as the auth package names them.
	Scopes []string
	// DisplayName is an optional human-readable label.
	DisplayName string
	// CreatedAt is set by the database.
	CreatedAt time.Time
	// ExpiresAt, when set, is when the key stops working.
	ExpiresAt *time.Time
	// RevokedAt is set by [DB.RevokeAPIKey].
	RevokedAt *time.Time
	// LastUsedAt is when the key last authenticated, if recorded.
	LastUsedAt *time.Time
}

// KeyRecord is what authentication needs to judge a presented key: the key,
// its owner and the owner's state, read in one query by [DB.LookupAPIKey].
type KeyRecord struct {
	// ID is the key ID.
	ID string
	// Tenant owns the key; it becomes the request's authenticated tenant.
	Tenant tenancy.ID
	// Hash is the stored hash of the secret, to compare in constant time.
	Hash []byte
	// Scopes are the granted scopes.
	Scopes []string
	// RevokedAt is set when the key was revoked.
	RevokedAt *time.Time
	// ExpiresAt is set when the key expires.
	ExpiresAt *time.Time
	// TenantState is the owning tenant's state ([TenantActive] or
	// [TenantSuspended]).
	TenantState string
}

// Columns returned for APIKey rows; secret_hash is left out on purpose (see
// APIKey.Hash).
const apiKeyColumns = `key_id, tenant_id, scopes, display_name, created_at, expires_at, revoked_at, last_used_at`

// Named API key queries. Each filters on tenant_id except sqlLookupAPIKey,
// which runs before any tenant is known: the key ID is what identifies the
// tenant, and the query returns that tenant with the key.
const (
	sqlCreateAPIKey = `
INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, display_name, expires_at)
VALUES ($2, $1, $3, $4, $5, $6)
RETURNING ` + apiKeyColumns

	sqlListAPIKeysFirst = `
SELECT ` + apiKeyColumns + `
FROM api_keys
WHERE tenant_id = $1
ORDER BY created_at, key_id
LIMIT $2`

	// The cursor row is looked up within the same tenant, so a key ID of
	// another tenant yields an empty page rather than a position.
	sqlListAPIKeysAfter = `
SELECT ` + apiKeyColumns + `
FROM api_keys
WHERE tenant_id = $1
  AND (created_at, key_id) > (
      SELECT c.created_at, c.key_id FROM api_keys AS c
      WHERE c.tenant_id = $1 AND c.key_id = $3)
ORDER BY created_at, key_id
LIMIT $2`

	// coalesce keeps the first revocation time, which makes revoking idempotent.
	sqlRevokeAPIKey = `
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE tenant_id = $1 AND key_id = $2
RETURNING ` + apiKeyColumns

	sqlLookupAPIKey = `
SELECT k.key_id, k.tenant_id, k.secret_hash, k.scopes, k.revoked_at, k.expires_at, t.state
FROM api_keys AS k
JOIN tenants AS t ON t.tenant_id = k.tenant_id
WHERE k.key_id = $1`
)

// CreateAPIKey stores k for tenant and returns the stored key (with the
// database's CreatedAt). k.ID and k.Hash are required; k.Tenant must be empty
// or equal tenant; CreatedAt, RevokedAt and LastUsedAt are ignored. It returns
// ErrNotFound if the tenant does not exist and ErrAlreadyExists if the key ID
// is taken.
func (db *DB) CreateAPIKey(ctx context.Context, tenant tenancy.ID, k APIKey) (APIKey, error) {
	op := fmt.Sprintf("postgres: create api key %q for tenant %q", k.ID, tenant)
	switch {
	case tenant == "":
		return APIKey{}, invalidf(op, "tenant is required")
	case k.Tenant != "" && k.Tenant != tenant:
		return APIKey{}, invalidf(op, "key names tenant %q", k.Tenant)
	case k.ID == "":
		return APIKey{}, invalidf(op, "key ID is required")
	case len(k.Hash) == 0:
		return APIKey{}, invalidf(op, "secret hash is required")
	}
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	out, err := scanAPIKey(db.pool.QueryRow(ctx, sqlCreateAPIKey,
		string(tenant), k.ID, k.Hash, scopes, k.DisplayName, k.ExpiresAt))
	if err != nil {
		return APIKey{}, wrapErr(op, err)
	}
	out.Hash = k.Hash
	return out, nil
}

// ListAPIKeys returns up to pageSize of tenant's keys, revoked ones included,
// ordered by creation time then ID. Pass after = "" for the first page and the
// last key ID of the previous page to continue; an ID that is not one of
// tenant's keys yields an empty page. Page sizes are as for [DB.ListTenants].
func (db *DB) ListAPIKeys(ctx context.Context, tenant tenancy.ID, pageSize int, after string) ([]APIKey, error) {
	op := fmt.Sprintf("postgres: list api keys of tenant %q", tenant)
	limit, err := pageLimit(op, pageSize)
	if err != nil {
		return nil, err
	}
	var rows pgx.Rows
	if after == "" {
		rows, err = db.pool.Query(ctx, sqlListAPIKeysFirst, string(tenant), limit)
	} else {
		rows, err = db.pool.Query(ctx, sqlListAPIKeysAfter, string(tenant), limit, after)
	}
	if err != nil {
		return nil, wrapErr(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) { return scanAPIKey(row) })
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// RevokeAPIKey marks tenant's key as revoked and returns it. Revoking a
// revoked key succeeds and keeps the first RevokedAt. It returns ErrNotFound
// when no key has that ID or the key belongs to another tenant.
func (db *DB) RevokeAPIKey(ctx context.Context, tenant tenancy.ID, keyID string) (APIKey, error) {
	op := fmt.Sprintf("postgres: revoke api key %q of tenant %q", keyID, tenant)
	if !validText(keyID) {
		// No stored key has such an ID (PostgreSQL cannot hold it).
		return APIKey{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	k, err := scanAPIKey(db.pool.QueryRow(ctx, sqlRevokeAPIKey, string(tenant), keyID))
	if err != nil {
		return APIKey{}, wrapErr(op, err)
	}
	return k, nil
}

// LookupAPIKey returns the key with the given ID together with its tenant's
// state, or ErrNotFound. It is the only query in this package that does not
// filter on a tenant ID: it runs during authentication, to find the tenant.
// The caller must still check the hash, revocation, expiry and tenant state,
// and should bound keyID's length before calling (it appears in the error).
func (db *DB) LookupAPIKey(ctx context.Context, keyID string) (KeyRecord, error) {
	op := fmt.Sprintf("postgres: lookup api key %q", keyID)
	if !validText(keyID) {
		// Presented by an unauthenticated client; no stored key can match.
		return KeyRecord{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var (
		r      KeyRecord
		tenant string
	)
	err := db.pool.QueryRow(ctx, sqlLookupAPIKey, keyID).
		Scan(&r.ID, &tenant, &r.Hash, &r.Scopes, &r.RevokedAt, &r.ExpiresAt, &r.TenantState)
	if err != nil {
		return KeyRecord{}, wrapErr(op, err)
	}
	r.Tenant = tenancy.ID(tenant)
	r.RevokedAt = utcPtr(r.RevokedAt)
	r.ExpiresAt = utcPtr(r.ExpiresAt)
	return r, nil
}

func scanAPIKey(row pgx.Row) (APIKey, error) {
	var (
		k      APIKey
		tenant string
	)
	if err := row.Scan(&k.ID, &tenant, &k.Scopes, &k.DisplayName, &k.CreatedAt,
		&k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt); err != nil {
		return APIKey{}, err
	}
	k.Tenant = tenancy.ID(tenant)
	k.CreatedAt = k.CreatedAt.UTC()
	k.ExpiresAt = utcPtr(k.ExpiresAt)
	k.RevokedAt = utcPtr(k.RevokedAt)
	k.LastUsedAt = utcPtr(k.LastUsedAt)
	return k, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
