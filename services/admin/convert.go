package admin

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// Key scopes as the store spells them; authentication maps the same strings
// to auth.Scope.
const (
	scopeIngest = "ingest"
	scopeQuery  = "query"
)

// storeState returns the store's spelling of a tenant state, and false for
// UNSPECIFIED and values the contract does not define.
func storeState(s adminv1.TenantState) (string, bool) {
	switch s {
	case adminv1.TenantState_TENANT_STATE_ACTIVE:
		return postgres.TenantActive, true
	case adminv1.TenantState_TENANT_STATE_SUSPENDED:
		return postgres.TenantSuspended, true
	default:
		return "", false
	}
}

// protoState is the inverse of storeState. A state this version does not know
// reads as UNSPECIFIED rather than failing the whole response.
func protoState(s string) adminv1.TenantState {
	switch s {
	case postgres.TenantActive:
		return adminv1.TenantState_TENANT_STATE_ACTIVE
	case postgres.TenantSuspended:
		return adminv1.TenantState_TENANT_STATE_SUSPENDED
	default:
		return adminv1.TenantState_TENANT_STATE_UNSPECIFIED
	}
}

// storeScope returns the store's spelling of a scope, and false for
// UNSPECIFIED and values the contract does not define.
func storeScope(s adminv1.Scope) (string, bool) {
	switch s {
	case adminv1.Scope_SCOPE_INGEST:
		return scopeIngest, true
	case adminv1.Scope_SCOPE_QUERY:
		return scopeQuery, true
	default:
		return "", false
	}
}

// protoScopes is the inverse of storeScope for a key's scopes. Scopes this
// version does not know (written by a newer one) are left out: the response
// never claims a permission it cannot name.
func protoScopes(scopes []string) []adminv1.Scope {
	out := make([]adminv1.Scope, 0, len(scopes))
	for _, s := range scopes {
		switch s {
		case scopeIngest:
			out = append(out, adminv1.Scope_SCOPE_INGEST)
		case scopeQuery:
			out = append(out, adminv1.Scope_SCOPE_QUERY)
		}
	}
	return out
}

// protoTenant converts a stored tenant.
func protoTenant(t postgres.Tenant) *adminv1.Tenant {
	return &adminv1.Tenant{
		TenantId:    t.ID.String(),
		DisplayName: t.DisplayName,
		State:       protoState(t.State),
		CreateTime:  timestamppb.New(t.CreatedAt),
		UpdateTime:  timestamppb.New(t.UpdatedAt),
	}
}

// protoAPIKey converts a stored key. It copies no secret and no hash: the
// store has no secret, and the hash is not part of the contract.
func protoAPIKey(k postgres.APIKey) *adminv1.ApiKey {
	return &adminv1.ApiKey{
		KeyId:       k.ID,
		TenantId:    k.Tenant.String(),
		DisplayName: k.DisplayName,
		Scopes:      protoScopes(k.Scopes),
		CreateTime:  timestamppb.New(k.CreatedAt),
		ExpireTime:  optionalTimestamp(k.ExpiresAt),
		RevokeTime:  optionalTimestamp(k.RevokedAt),
	}
}

// optionalTimestamp converts a nullable time; nil stays absent.
func optionalTimestamp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
