package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// parseTenantID turns a request's tenant_id into a tenancy.ID, or returns an
// INVALID_ARGUMENT naming field.
func parseTenantID(field, s string) (tenancy.ID, error) {
	id, err := tenancy.ParseID(s)
	if err != nil {
		// ParseID says what is wrong after its sentinel's text, and quotes
		// the input only when it is short.
		return "", invalidArgument(field, strings.TrimPrefix(err.Error(), tenancy.ErrInvalidID.Error()+": "))
	}
	return id, nil
}

// validTenantToken reports whether a decoded page token is a tenant ID.
func validTenantToken(s string) bool {
	_, err := tenancy.ParseID(s)
	return err == nil
}

// CreateTenant registers a new, active tenant. An existing tenant_id is
// postgres.ErrAlreadyExists.
func (s *Service) CreateTenant(ctx context.Context, req *adminv1.CreateTenantRequest) (*adminv1.CreateTenantResponse, error) {
	id, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	t, err := s.store.CreateTenant(ctx, postgres.Tenant{
		ID:          id,
		DisplayName: req.GetDisplayName(),
		State:       postgres.TenantActive,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: create tenant: %w", err)
	}
	s.logger.InfoContext(ctx, "tenant created", slog.String("tenant_id", id.String()))
	return &adminv1.CreateTenantResponse{Tenant: protoTenant(t)}, nil
}

// GetTenant returns one tenant, or postgres.ErrNotFound.
func (s *Service) GetTenant(ctx context.Context, req *adminv1.GetTenantRequest) (*adminv1.GetTenantResponse, error) {
	id, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	t, err := s.store.GetTenant(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("admin: get tenant: %w", err)
	}
	return &adminv1.GetTenantResponse{Tenant: protoTenant(t)}, nil
}

// ListTenants returns a page of tenants ordered by tenant_id.
func (s *Service) ListTenants(ctx context.Context, req *adminv1.ListTenantsRequest) (*adminv1.ListTenantsResponse, error) {
	after, err := decodePageToken(req.GetPageToken(), validTenantToken)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	rows, err := s.store.ListTenants(ctx, size+1, after)
	if err != nil {
		return nil, fmt.Errorf("admin: list tenants: %w", err)
	}
	rows, next := page(rows, size, func(t postgres.Tenant) string { return t.ID.String() })
	resp := &adminv1.ListTenantsResponse{
		Tenants:       make([]*adminv1.Tenant, 0, len(rows)),
		NextPageToken: next,
	}
	for _, t := range rows {
		resp.Tenants = append(resp.Tenants, protoTenant(t))
	}
	return resp, nil
}

// UpdateTenant changes the fields of a tenant named in update_mask:
// display_name, state, limits (every override: the request's set fields become
// the overrides, all others are removed) and limits.<field> (one override: set
// to the request's value, or removed when the request leaves the field unset).
// Any other path, or an empty mask, is INVALID_ARGUMENT. Limits are checked
// before anything is written: the request's values against the contract's
// rules, then the effective limits (the defaults with the tenant's resulting
// overrides) with tenancy.Limits.Validate, every problem named in one
// INVALID_ARGUMENT.
//
// The tenant is read and written in one transaction under its row lock
// (postgres.DB.UpdateTenantFunc), so concurrent updates of different limits
// of one tenant each keep the other's change.
func (s *Service) UpdateTenant(ctx context.Context, req *adminv1.UpdateTenantRequest) (*adminv1.UpdateTenantResponse, error) {
	in := req.GetTenant()
	if in == nil {
		return nil, invalidArgument("tenant", "required")
	}
	id, err := parseTenantID("tenant.tenant_id", in.GetTenantId())
	if err != nil {
		return nil, err
	}
	change, err := s.parseTenantChange(in, req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	var refused error // a status built inside the transaction
	t, err := s.store.UpdateTenantFunc(ctx, id, func(t *postgres.Tenant) error {
		refused = change.apply(t)
		return refused
	})
	if refused != nil {
		return nil, refused
	}
	if err != nil {
		return nil, fmt.Errorf("admin: update tenant: %w", err)
	}
	attrs := []any{slog.String("tenant_id", id.String())}
	if change.state != nil {
		attrs = append(attrs, slog.String("state", *change.state))
	}
	if change.displayName != nil {
		attrs = append(attrs, slog.Bool("display_name_changed", true))
	}
	if len(change.limitFields) > 0 {
		attrs = append(attrs, slog.Any("limits_changed", change.limitFields))
	}
	s.logger.InfoContext(ctx, "tenant updated", attrs...)
	return &adminv1.UpdateTenantResponse{Tenant: protoTenant(t)}, nil
}
