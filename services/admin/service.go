package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Store is what the admin service needs from storage. *postgres.DB satisfies
// it. Every method that touches a tenant's keys takes the tenant explicitly
// and must not see or change another tenant's rows.
type Store interface {
	// CreateTenant inserts a tenant; a duplicate ID is postgres.ErrAlreadyExists.
	CreateTenant(ctx context.Context, t postgres.Tenant) (postgres.Tenant, error)
	// GetTenant returns a tenant or postgres.ErrNotFound.
	GetTenant(ctx context.Context, id tenancy.ID) (postgres.Tenant, error)
	// ListTenants returns up to pageSize tenants with IDs after afterID, by ID.
	ListTenants(ctx context.Context, pageSize int, afterID string) ([]postgres.Tenant, error)
	// UpdateTenantFunc reads the tenant, lets fn change it and writes it back
	// in one transaction under the tenant's row lock; postgres.ErrNotFound
	// when there is no such tenant. fn's error is returned unchanged.
	UpdateTenantFunc(ctx context.Context, id tenancy.ID, fn func(*postgres.Tenant) error) (postgres.Tenant, error)
	// CreateAPIKey inserts a key of tenant; a missing tenant is postgres.ErrNotFound.
	CreateAPIKey(ctx context.Context, tenant tenancy.ID, k postgres.APIKey) (postgres.APIKey, error)
	// ListAPIKeys returns up to pageSize keys of tenant after the key ID after, oldest first.
	ListAPIKeys(ctx context.Context, tenant tenancy.ID, pageSize int, after string) ([]postgres.APIKey, error)
	// RevokeAPIKey revokes a key of tenant (idempotently), or returns
	// postgres.ErrNotFound when tenant has no such key.
	RevokeAPIKey(ctx context.Context, tenant tenancy.ID, keyID string) (postgres.APIKey, error)
	// RotateAPIKey creates newKey as the successor of tenant's key keyID and
	// ends the old key after grace, in one transaction; postgres.ErrNotFound
	// when tenant has no such key, postgres.ErrFailedPrecondition when it is
	// revoked, expired or already rotated.
	RotateAPIKey(ctx context.Context, tenant tenancy.ID, keyID string, grace time.Duration, newKey postgres.APIKey) (old, created postgres.APIKey, err error)
}

// Config configures a [Service]. It has no settings yet: page sizes and key
// formats are fixed by the v1 contract, not by deployment.
type Config struct{}

// Validate reports every problem of c, joined, or nil.
func (c Config) Validate() error { return nil }

// Service implements adminv1.AdminServiceServer. It is safe for concurrent use.
type Service struct {
	adminv1.UnimplementedAdminServiceServer

	cfg       Config
	store     Store
	validator protovalidate.Validator
	logger    *slog.Logger
}

var _ adminv1.AdminServiceServer = (*Service)(nil)

// New returns an admin service over store. logger may be nil (no logs). The
// service registers no metrics of its own — the server's per-RPC metrics cover
// it — so reg is accepted for uniform wiring and may be nil.
func New(cfg Config, store Store, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("admin: store is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	validator, err := protovalidate.New(protovalidate.WithMessages(&adminv1.TenantLimits{}))
	if err != nil {
		return nil, fmt.Errorf("admin: compile validation rules: %w", err)
	}
	return &Service{cfg: cfg, store: store, validator: validator, logger: logger}, nil
}
