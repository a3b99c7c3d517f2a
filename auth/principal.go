package auth

import (
	"context"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Principal is the authenticated caller of a request: either a tenant API key
// (Tenant, KeyID and Scopes set) or the operator's admin token (Admin set, the
// other fields empty — the admin is not a tenant).
type Principal struct {
	// Tenant owns the API key. Handlers must take the tenant from
	// tenancy.FromContext, not from here (ARCHITECTURE.md invariant 1); the
	// field exists for logging and auditing.
	Tenant tenancy.ID
	// KeyID is the public ID of the API key that authenticated the request.
	KeyID string
	// Scopes are the permissions of the key.
	Scopes Scopes
	// Admin is true for the operator's admin token.
	Admin bool
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p. The auth interceptor calls it
// (and, for tenant keys, tenancy.NewContext) after authenticating a request.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated principal of the request, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
