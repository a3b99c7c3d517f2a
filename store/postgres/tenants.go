package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Tenant states stored in tenants.state (enforced by a CHECK constraint).
const (
	// TenantActive is the state of a tenant whose keys work.
	TenantActive = "active"
	// TenantSuspended is the state of a tenant whose keys are refused.
	TenantSuspended = "suspended"
)

// Page sizes accepted by the List methods.
const (
	// DefaultPageSize is used when a List method gets a page size of zero.
	DefaultPageSize = 100
	// MaxPageSize is the largest page a List method returns; larger
	// requests are clamped to it.
	MaxPageSize = 1000
)

// Tenant is a row of the tenants table.
type Tenant struct {
	// ID is the tenant's identifier, the tenant_id of all its data.
	ID tenancy.ID
	// DisplayName is a human-readable name.
	DisplayName string
	// State is [TenantActive] or [TenantSuspended].
	State string
	// Limits are the tenant's overrides of the default limits; the zero
	// value overrides nothing. The store keeps them as given: whether they
	// make valid limits is for the caller to decide (see
	// [tenancy.Limits.Validate]).
	Limits tenancy.LimitOverrides
	// CreatedAt and UpdatedAt are set by the database (UTC).
	CreatedAt, UpdatedAt time.Time
}

// TenantUpdate names the fields [DB.UpdateTenant] changes; nil leaves a
// field as it is.
type TenantUpdate struct {
	// DisplayName, when set, replaces the display name.
	DisplayName *string
	// State, when set, must be [TenantActive] or [TenantSuspended].
	State *string
	// Limits, when set, replaces all of the tenant's limit overrides (the
	// zero LimitOverrides removes them all). To change some overrides and
	// keep the others, use [DB.UpdateTenantFunc], which reads and writes
	// under a row lock.
	Limits *tenancy.LimitOverrides
}

const tenantColumns = `tenant_id, display_name, state, limits, created_at, updated_at`

// Named tenant queries. The tenants table is keyed by tenant_id itself.
const (
	sqlCreateTenant = `
INSERT INTO tenants (tenant_id, display_name, state, limits)
VALUES ($1, $2, $3, $4)
RETURNING ` + tenantColumns

	sqlGetTenant = `
SELECT ` + tenantColumns + `
FROM tenants
WHERE tenant_id = $1`

	sqlListTenants = `
SELECT ` + tenantColumns + `
FROM tenants
WHERE tenant_id > $1
ORDER BY tenant_id
LIMIT $2`

	// coalesce keeps a column whose parameter is NULL (not being updated).
	sqlUpdateTenant = `
UPDATE tenants
SET display_name = coalesce($2, display_name),
    state        = coalesce($3, state),
    limits       = coalesce($4::jsonb, limits),
    updated_at   = now()
WHERE tenant_id = $1
RETURNING ` + tenantColumns

	// The row lock makes UpdateTenantFunc's read-modify-write atomic: a
	// concurrent update of the same tenant waits for this transaction and
	// then reads its result.
	sqlGetTenantForUpdate = `
SELECT ` + tenantColumns + `
FROM tenants
WHERE tenant_id = $1
FOR UPDATE`

	sqlWriteTenant = `
UPDATE tenants
SET display_name = $2,
    state        = $3,
    limits       = $4,
    updated_at   = now()
WHERE tenant_id = $1
RETURNING ` + tenantColumns
)

// CreateTenant inserts t and returns the stored row. An empty State means
// [TenantActive]; CreatedAt and UpdatedAt are ignored. It returns
// ErrAlreadyExists if the ID is taken and ErrInvalidArgument for an invalid
// ID or state.
func (db *DB) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	if _, err := tenancy.ParseID(string(t.ID)); err != nil {
		// ParseID's message quotes the ID only when that is safe to log.
		return Tenant{}, invalidf("postgres: create tenant", "%v", err)
	}
	op := fmt.Sprintf("postgres: create tenant %q", t.ID)
	if t.State == "" {
		t.State = TenantActive
	}
	if !validTenantState(t.State) {
		return Tenant{}, invalidf(op, "state %q, want %q or %q", t.State, TenantActive, TenantSuspended)
	}
	limits, err := encodeLimits(t.Limits)
	if err != nil {
		return Tenant{}, invalidf(op, "%v", err)
	}
	out, err := scanTenant(db.pool.QueryRow(ctx, sqlCreateTenant, string(t.ID), t.DisplayName, t.State, limits))
	if err != nil {
		return Tenant{}, wrapErr(op, err)
	}
	return out, nil
}

// GetTenant returns the tenant with the given ID, or ErrNotFound.
func (db *DB) GetTenant(ctx context.Context, id tenancy.ID) (Tenant, error) {
	t, err := scanTenant(db.pool.QueryRow(ctx, sqlGetTenant, string(id)))
	if err != nil {
		return Tenant{}, wrapErr(fmt.Sprintf("postgres: get tenant %q", id), err)
	}
	return t, nil
}

// ListTenants returns up to pageSize tenants ordered by ID, starting after
// afterID ("" for the first page; pass the last ID of the previous page to
// continue). A pageSize of zero means [DefaultPageSize]; larger than
// [MaxPageSize] is clamped. A short page is the last one.
func (db *DB) ListTenants(ctx context.Context, pageSize int, afterID string) ([]Tenant, error) {
	const op = "postgres: list tenants"
	limit, err := pageLimit(op, pageSize)
	if err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, sqlListTenants, afterID, limit)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) { return scanTenant(row) })
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// UpdateTenant applies u to the tenant and returns the updated row, or
// ErrNotFound. updated_at moves even when u changes nothing, so the call
// doubles as a touch.
func (db *DB) UpdateTenant(ctx context.Context, id tenancy.ID, u TenantUpdate) (Tenant, error) {
	op := fmt.Sprintf("postgres: update tenant %q", id)
	if u.State != nil && !validTenantState(*u.State) {
		return Tenant{}, invalidf(op, "state %q, want %q or %q", *u.State, TenantActive, TenantSuspended)
	}
	var limits []byte // nil is NULL: keep the stored overrides
	if u.Limits != nil {
		var err error
		if limits, err = encodeLimits(*u.Limits); err != nil {
			return Tenant{}, invalidf(op, "%v", err)
		}
	}
	t, err := scanTenant(db.pool.QueryRow(ctx, sqlUpdateTenant, string(id), u.DisplayName, u.State, limits))
	if err != nil {
		return Tenant{}, wrapErr(op, err)
	}
	return t, nil
}

// UpdateTenantFunc reads the tenant, lets fn change it and writes the result,
// in one transaction that holds the tenant's row lock throughout, so that
// concurrent read-modify-write updates of the same tenant apply one after the
// other and none is lost. fn may change DisplayName, State and Limits; changes
// to ID, CreatedAt and UpdatedAt are ignored. fn runs once, while the lock is
// held, so it should only compute.
//
// It returns the stored row, ErrNotFound when there is no such tenant, and
// ErrInvalidArgument for a state fn set outside the allowed set. When fn
// returns an error the transaction is rolled back and that error is returned
// unchanged (not wrapped), so a caller can return a status it built in fn.
func (db *DB) UpdateTenantFunc(ctx context.Context, id tenancy.ID, fn func(*Tenant) error) (Tenant, error) {
	op := fmt.Sprintf("postgres: update tenant %q", id)
	var (
		out   Tenant
		fnErr error
	)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		t, err := scanTenant(tx.QueryRow(ctx, sqlGetTenantForUpdate, string(id)))
		if err != nil {
			return err
		}
		if fnErr = fn(&t); fnErr != nil {
			return fnErr
		}
		if !validTenantState(t.State) {
			return invalidf(op, "state %q, want %q or %q", t.State, TenantActive, TenantSuspended)
		}
		limits, err := encodeLimits(t.Limits)
		if err != nil {
			return invalidf(op, "%v", err)
		}
		out, err = scanTenant(tx.QueryRow(ctx, sqlWriteTenant, string(id), t.DisplayName, t.State, limits))
		return err
	})
	switch {
	case fnErr != nil:
		return Tenant{}, fnErr
	case errors.Is(err, ErrInvalidArgument):
		return Tenant{}, err
	case err != nil:
		return Tenant{}, wrapErr(op, err)
	}
	return out, nil
}

func validTenantState(s string) bool {
	return s == TenantActive || s == TenantSuspended
}

func scanTenant(row pgx.Row) (Tenant, error) {
	var (
		t      Tenant
		id     string
		limits []byte
	)
	if err := row.Scan(&id, &t.DisplayName, &t.State, &limits, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return Tenant{}, err
	}
	ov, err := decodeLimits(limits)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w", id, err)
	}
	t.ID = tenancy.ID(id)
	t.Limits = ov
	t.CreatedAt = t.CreatedAt.UTC()
	t.UpdatedAt = t.UpdatedAt.UTC()
	return t, nil
}

// pageLimit validates a List page size and applies the default and cap.
func pageLimit(op string, pageSize int) (int, error) {
	switch {
	case pageSize < 0:
		return 0, invalidf(op, "page size %d is negative", pageSize)
	case pageSize == 0:
		return DefaultPageSize, nil
	case pageSize > MaxPageSize:
		return MaxPageSize, nil
	default:
		return pageSize, nil
	}
}
