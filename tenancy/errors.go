package tenancy

import "errors"

var (
	// ErrInvalidID is returned (wrapped, with the reason) by [ParseID] for a
	// string that is not a valid tenant identifier.
	ErrInvalidID = errors.New("tenancy: invalid tenant ID")

	// ErrNoTenant is returned by [FromContext] when the context carries no
	// authenticated tenant. Reaching a tenant handler without one is a wiring
	// bug (the auth interceptor did not run), so callers should treat it as an
	// internal error rather than blame the client.
	ErrNoTenant = errors.New("tenancy: no authenticated tenant in context")
)
