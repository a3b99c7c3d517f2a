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
	// LastUsedAt is when the key last authenticated, if recorded (see
	// [DB.TouchAPIKeys]).
	LastUsedAt *time.Time
	// ReplacedBy is the ID of the key that replaced this one in a rotation
	// ([DB.RotateAPIKey]), or "" if it was never rotated.
	ReplacedBy string
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
const apiKeyColumns = `key_id, tenant_id, scopes, display_name, created_at, expires_at, revoked_at, last_used_at, replaced_by`

// Named API key queries. Each filters on tenant_id except the two of the
// authentication path: sqlLookupAPIKey runs before any tenant is known (the
// key ID is what identifies the tenant, and the query returns that tenant with
// the key), and sqlTouchAPIKeys records the use of keys that authenticated,
// by their globally unique IDs, for many tenants at once.
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

	// The row lock holds off a concurrent revocation or rotation of the key
	// until RotateAPIKey commits. now() is the transaction's time, the same
	// instant the other statements of the rotation use.
	sqlLockAPIKey = `
SELECT now(), ` + apiKeyColumns + `
FROM api_keys
WHERE tenant_id = $1 AND key_id = $2
FOR UPDATE`

	// The successor copies the old key's tenant, scopes and display name,
	// and its expiry unless $5 sets one.
	sqlInsertSuccessorKey = `
INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, display_name, expires_at)
SELECT $3, tenant_id, $4, scopes, display_name, coalesce($5::timestamptz, expires_at)
FROM api_keys
WHERE tenant_id = $1 AND key_id = $2
RETURNING ` + apiKeyColumns

	// least ignores NULL, so a key that never expired gets now() + grace.
	sqlRetireRotatedKey = `
UPDATE api_keys
SET expires_at  = least(expires_at, now() + $3::interval),
    replaced_by = $4
WHERE tenant_id = $1 AND key_id = $2
RETURNING ` + apiKeyColumns

	// Rows are locked in key order, so concurrent touches of overlapping
	// keys queue instead of deadlocking, and only rows whose time moves
	// forward are written. greatest keeps the newest time when a concurrent
	// touch wrote a later one meanwhile.
	sqlTouchAPIKeys = `
WITH used AS (
    SELECT u.key_id, u.used_at
    FROM unnest($1::text[], $2::timestamptz[]) AS u(key_id, used_at)
), locked AS (
    SELECT k.key_id, used.used_at
    FROM api_keys AS k
    JOIN used ON used.key_id = k.key_id
    WHERE k.last_used_at IS NULL OR k.last_used_at < used.used_at
    ORDER BY k.key_id
    FOR UPDATE OF k
)
UPDATE api_keys AS k
SET last_used_at = greatest(coalesce(k.last_used_at, '-infinity'), locked.used_at)
FROM locked
WHERE k.key_id = locked.key_id`

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

// scanAPIKey scans the apiKeyColumns of row, after the columns scanned into
// leading (which come first in the select list).
func scanAPIKey(row pgx.Row, leading ...any) (APIKey, error) {
	var (
		k          APIKey
		tenant     string
		replacedBy *string
	)
	dest := append(leading, &k.ID, &tenant, &k.Scopes, &k.DisplayName, &k.CreatedAt,
		&k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &replacedBy)
	if err := row.Scan(dest...); err != nil {
		return APIKey{}, err
	}
	k.Tenant = tenancy.ID(tenant)
	if replacedBy != nil {
		k.ReplacedBy = *replacedBy
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.ExpiresAt = utcPtr(k.ExpiresAt)
	k.RevokedAt = utcPtr(k.RevokedAt)
	k.LastUsedAt = utcPtr(k.LastUsedAt)
	return k, nil
}

// RotateAPIKey replaces tenant's key keyID with newKey, in one transaction:
// newKey is created with the old key's scopes and display name, and with the
// old key's expiry unless newKey.ExpiresAt sets one; the old key records its
// successor (ReplacedBy) and expires at the earlier of its own expiry and now
// plus grace. A grace of zero ends the old key at once.
//
// newKey.ID and newKey.Hash are required, generated by the caller as for
// [DB.CreateAPIKey]; newKey.Tenant must be empty or tenant; Scopes and
// DisplayName must be empty (they are inherited); CreatedAt, RevokedAt,
// LastUsedAt and ReplacedBy are ignored. It returns the old key as updated and
// the new key with its Hash.
//
// It returns ErrNotFound when tenant has no key keyID (whether or not another
// tenant does), ErrFailedPrecondition when the key is revoked, expired or
// already rotated, ErrInvalidArgument for a negative grace or an incomplete
// newKey, and ErrAlreadyExists if newKey.ID is taken.
func (db *DB) RotateAPIKey(ctx context.Context, tenant tenancy.ID, keyID string, grace time.Duration, newKey APIKey) (old, created APIKey, err error) {
	op := fmt.Sprintf("postgres: rotate api key %q of tenant %q", keyID, tenant)
	switch {
	case grace < 0:
		return APIKey{}, APIKey{}, invalidf(op, "grace period %v is negative", grace)
	case newKey.Tenant != "" && newKey.Tenant != tenant:
		return APIKey{}, APIKey{}, invalidf(op, "new key names tenant %q", newKey.Tenant)
	case newKey.ID == "":
		return APIKey{}, APIKey{}, invalidf(op, "new key ID is required")
	case len(newKey.Hash) == 0:
		return APIKey{}, APIKey{}, invalidf(op, "new key secret hash is required")
	case len(newKey.Scopes) > 0 || newKey.DisplayName != "":
		return APIKey{}, APIKey{}, invalidf(op, "new key scopes and display name are inherited and must be empty")
	case !validText(keyID):
		// No stored key has such an ID (PostgreSQL cannot hold it).
		return APIKey{}, APIKey{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var now time.Time
		cur, err := scanAPIKey(tx.QueryRow(ctx, sqlLockAPIKey, string(tenant), keyID), &now)
		if err != nil {
			return err
		}
		switch {
		case cur.RevokedAt != nil:
			return fmt.Errorf("%w: the key was revoked at %s", ErrFailedPrecondition, cur.RevokedAt.Format(time.RFC3339))
		case cur.ReplacedBy != "":
			return fmt.Errorf("%w: the key was already rotated to %q", ErrFailedPrecondition, cur.ReplacedBy)
		case cur.ExpiresAt != nil && !now.Before(*cur.ExpiresAt):
			return fmt.Errorf("%w: the key expired at %s", ErrFailedPrecondition, cur.ExpiresAt.Format(time.RFC3339))
		}
		created, err = scanAPIKey(tx.QueryRow(ctx, sqlInsertSuccessorKey,
			string(tenant), keyID, newKey.ID, newKey.Hash, newKey.ExpiresAt))
		if err != nil {
			return err
		}
		old, err = scanAPIKey(tx.QueryRow(ctx, sqlRetireRotatedKey, string(tenant), keyID, grace, created.ID))
		return err
	})
	if err != nil {
		return APIKey{}, APIKey{}, wrapErr(op, err)
	}
	created.Hash = newKey.Hash
	return old, created, nil
}

// TouchAPIKeys records when keys were last used: for each key ID in used, it
// moves last_used_at to the given time unless a later time is already stored,
// so an old or replayed touch never moves it back. IDs of keys that do not
// exist (or cannot, such as text with a NUL byte) are ignored, as are zero
// times. It is one statement, whatever the number of keys; the caller (the
// authentication layer, which knows only keys that authenticated) batches and
// debounces. Like [DB.LookupAPIKey] it addresses keys by their globally
// unique ID, not by tenant.
func (db *DB) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	times := make([]time.Time, 0, len(used))
	for id, t := range used {
		if !validText(id) || !validTime(t) {
			continue
		}
		ids = append(ids, id)
		times = append(times, t)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := db.pool.Exec(ctx, sqlTouchAPIKeys, ids, times); err != nil {
		return wrapErr(fmt.Sprintf("postgres: touch %d api keys", len(ids)), err)
	}
	return nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
