package admin

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/abacus-analytics/abacus/auth"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// keyIDLength is the length of a key ID, fixed by the contract (ApiKey.key_id).
const keyIDLength = 16

// Grace periods of RotateApiKey, fixed by the contract
// (RotateApiKeyRequest.grace_period).
const (
	// defaultRotationGrace applies when the request has no grace_period.
	defaultRotationGrace = 24 * time.Hour
	// maxRotationGrace is the longest grace period.
	maxRotationGrace = 30 * 24 * time.Hour
)

// validKeyID reports whether s has the form of a key ID: 16 ASCII letters and
// digits. It guards page tokens, which must resume after a real key ID.
func validKeyID(s string) bool {
	if len(s) != keyIDLength {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// CreateApiKey issues a key for an existing tenant (postgres.ErrNotFound
// otherwise). Only the key's hash is stored; the secret is in the response and
// nowhere else.
func (s *Service) CreateApiKey(ctx context.Context, req *adminv1.CreateApiKeyRequest) (*adminv1.CreateApiKeyResponse, error) {
	tenant, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	scopes, err := storeScopes(req.GetScopes())
	if err != nil {
		return nil, err
	}
	var expires *time.Time
	if ts := req.GetExpireTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalidArgument("expire_time", "not a valid timestamp")
		}
		t := ts.AsTime()
		expires = &t
	}

	key, err := auth.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("admin: create api key: %w", err)
	}
	stored, err := s.store.CreateAPIKey(ctx, tenant, postgres.APIKey{
		ID:          key.ID,
		Tenant:      tenant,
		Hash:        key.Hash,
		Scopes:      scopes,
		DisplayName: req.GetDisplayName(),
		ExpiresAt:   expires,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: create api key: %w", err)
	}
	attrs := []any{
		slog.String("tenant_id", tenant.String()),
		slog.String("key_id", stored.ID),
		slog.Any("scopes", stored.Scopes),
	}
	if stored.ExpiresAt != nil {
		attrs = append(attrs, slog.Time("expire_time", *stored.ExpiresAt))
	}
	s.logger.InfoContext(ctx, "api key created", attrs...)
	return &adminv1.CreateApiKeyResponse{
		ApiKey: protoAPIKey(stored),
		Secret: key.Secret,
	}, nil
}

// storeScopes converts requested scopes to the store's spelling, dropping
// duplicates. UNSPECIFIED, undefined values and an empty list are
// INVALID_ARGUMENT.
func storeScopes(in []adminv1.Scope) ([]string, error) {
	if len(in) == 0 {
		return nil, invalidArgument("scopes", "at least one scope is required: SCOPE_INGEST, SCOPE_QUERY")
	}
	out := make([]string, 0, len(in))
	for i, sc := range in {
		s, ok := storeScope(sc)
		if !ok {
			return nil, invalidArgument(fmt.Sprintf("scopes[%d]", i), "must be SCOPE_INGEST or SCOPE_QUERY")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// ListApiKeys returns a page of a tenant's keys, oldest first, without secrets
// or hashes. An unknown tenant is postgres.ErrNotFound rather than an empty
// list.
func (s *Service) ListApiKeys(ctx context.Context, req *adminv1.ListApiKeysRequest) (*adminv1.ListApiKeysResponse, error) {
	tenant, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken(req.GetPageToken(), validKeyID)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	rows, err := s.store.ListAPIKeys(ctx, tenant, size+1, after)
	if err != nil {
		return nil, fmt.Errorf("admin: list api keys: %w", err)
	}
	if len(rows) == 0 {
		// An empty page is also what a tenant that does not exist looks like.
		if _, err := s.store.GetTenant(ctx, tenant); err != nil {
			return nil, fmt.Errorf("admin: list api keys: %w", err)
		}
	}
	rows, next := page(rows, size, func(k postgres.APIKey) string { return k.ID })
	resp := &adminv1.ListApiKeysResponse{
		ApiKeys:       make([]*adminv1.ApiKey, 0, len(rows)),
		NextPageToken: next,
	}
	for _, k := range rows {
		resp.ApiKeys = append(resp.ApiKeys, protoAPIKey(k))
	}
	return resp, nil
}

// RevokeApiKey revokes a key of the tenant. Revoking a revoked key succeeds
// and keeps the first revoke_time; a key that is not the tenant's is
// postgres.ErrNotFound, exactly like a key that does not exist.
func (s *Service) RevokeApiKey(ctx context.Context, req *adminv1.RevokeApiKeyRequest) (*adminv1.RevokeApiKeyResponse, error) {
	tenant, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	k, err := s.store.RevokeAPIKey(ctx, tenant, req.GetKeyId())
	if err != nil {
		return nil, fmt.Errorf("admin: revoke api key: %w", err)
	}
	attrs := []any{slog.String("tenant_id", tenant.String()), slog.String("key_id", k.ID)}
	if k.RevokedAt != nil {
		attrs = append(attrs, slog.Time("revoke_time", *k.RevokedAt))
	}
	s.logger.InfoContext(ctx, "api key revoked", attrs...)
	return &adminv1.RevokeApiKeyResponse{ApiKey: protoAPIKey(k)}, nil
}

// RotateApiKey replaces a key of the tenant with a new one that has the same
// scopes, display name and expiry, and sets the old key to expire at the end
// of the grace period (24 hours when absent, 0 ends it at once, at most 30
// days) unless it expires sooner anyway. The new secret is in the response
// only. A key that is not the tenant's is postgres.ErrNotFound; one that is
// revoked, expired or already rotated is postgres.ErrFailedPrecondition.
func (s *Service) RotateApiKey(ctx context.Context, req *adminv1.RotateApiKeyRequest) (*adminv1.RotateApiKeyResponse, error) {
	tenant, err := parseTenantID("tenant_id", req.GetTenantId())
	if err != nil {
		return nil, err
	}
	grace, err := rotationGrace(req)
	if err != nil {
		return nil, err
	}
	key, err := auth.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("admin: rotate api key: %w", err)
	}
	old, created, err := s.store.RotateAPIKey(ctx, tenant, req.GetKeyId(), grace, postgres.APIKey{
		ID:     key.ID,
		Tenant: tenant,
		Hash:   key.Hash,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: rotate api key: %w", err)
	}
	attrs := []any{
		slog.String("tenant_id", tenant.String()),
		slog.String("key_id", created.ID),
		slog.String("previous_key_id", old.ID),
		slog.Duration("grace_period", grace),
	}
	if old.ExpiresAt != nil {
		attrs = append(attrs, slog.Time("previous_expire_time", *old.ExpiresAt))
	}
	s.logger.InfoContext(ctx, "api key rotated", attrs...)
	return &adminv1.RotateApiKeyResponse{
		ApiKey:         protoAPIKey(created),
		Secret:         key.Secret,
		PreviousApiKey: protoAPIKey(old),
	}, nil
}

// rotationGrace returns the request's grace period, or the default when it
// has none; a period that is invalid, negative or too long is
// INVALID_ARGUMENT.
func rotationGrace(req *adminv1.RotateApiKeyRequest) (time.Duration, error) {
	d := req.GetGracePeriod()
	if d == nil {
		return defaultRotationGrace, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidArgument("grace_period", "not a valid duration")
	}
	grace := d.AsDuration()
	if grace < 0 || grace > maxRotationGrace {
		return 0, invalidArgument("grace_period", fmt.Sprintf("must be from 0s to %ds (30 days)", int64(maxRotationGrace/time.Second)))
	}
	return grace, nil
}
