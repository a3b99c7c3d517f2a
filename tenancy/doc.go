// Package tenancy owns tenant identity: the [ID] type, its validation, and the
// context that carries the authenticated tenant through a request.
//
// # The tenant edge
//
// The tenant of a request comes only from authentication (ARCHITECTURE.md,
// invariant 1). The auth interceptor puts it into the request context with
// [NewContext]; nothing else does. A request body, header or query parameter
// never chooses the tenant, and no package other than this one reads it from a
// context.
//
// A handler calls [FromContext] once, on its first line, and from then on
// passes the [ID] explicitly — the first argument after ctx — to the store,
// cache, limiter and producer calls it makes:
//
//	func (s *Service) Ingest(ctx context.Context, req *ingestv1.IngestRequest) (*ingestv1.IngestResponse, error) {
//		tenant, err := tenancy.FromContext(ctx)
//		if err != nil {
//			return nil, err
//		}
//		return s.ingest(ctx, tenant, req)
//	}
//
// Code below the handler never calls FromContext: a function that needs the
// tenant takes a tenancy.ID parameter, which makes the tenant visible in every
// signature and keeps it from being lost or swapped on a goroutine hop.
// [ErrNoTenant] from FromContext means the method was wired without the auth
// interceptor (or is a public method); it is a server bug, not a client error.
//
// # Per-tenant limits
//
// Per-tenant limits and their overrides (one Limits struct with defaults and a
// typed getter per limit, see STYLE.md convention 3) belong in this package and
// arrive with their own issue.
package tenancy
