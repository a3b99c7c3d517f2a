package tenancy

import "context"

// contextKey is unexported so that no other package can read or overwrite the
// tenant with context.WithValue.
type contextKey struct{}

// NewContext returns a copy of ctx that carries id as the authenticated tenant.
// Only the auth interceptor calls it, after it has authenticated a tenant
// credential; see the package documentation.
func NewContext(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the authenticated tenant of the request, or [ErrNoTenant]
// when there is none. A handler calls it once, on its first line, and passes the
// ID explicitly from then on.
func FromContext(ctx context.Context) (ID, error) {
	id, ok := ctx.Value(contextKey{}).(ID)
	if !ok || id == "" {
		return "", ErrNoTenant
	}
	return id, nil
}
