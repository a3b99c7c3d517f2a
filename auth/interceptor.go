package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/tenancy"
)

// ErrorDomain is the domain of the ErrorInfo details this package attaches.
const ErrorDomain = "abacus.dev"

// Reasons of the ErrorInfo details this package attaches; clients may switch
// on them.
const (
	// ReasonMissingCredentials means no authorization metadata was sent.
	ReasonMissingCredentials = "MISSING_CREDENTIALS"
	// ReasonInvalidCredentials means the credential was rejected (any cause).
	ReasonInvalidCredentials = "INVALID_CREDENTIALS"
	// ReasonMissingScope means the API key lacks the scope the method needs; the
	// metadata key "required_scope" names it when the method needs one
	// particular scope, and is absent when any scope would do (a key without
	// scopes calling an AnyTenantKey method).
	ReasonMissingScope = "MISSING_SCOPE"
	// ReasonAdminRequired means the method accepts only the admin token.
	ReasonAdminRequired = "ADMIN_REQUIRED"
	// ReasonTenantKeyRequired means the method needs a tenant API key, and the
	// admin token is not one.
	ReasonTenantKeyRequired = "TENANT_KEY_REQUIRED"
	// ReasonMethodNotAllowed means the method has no auth policy, so it is denied.
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// ReasonAuthUnavailable means credentials could not be checked right now;
	// retry with backoff.
	ReasonAuthUnavailable = "AUTH_UNAVAILABLE"
	// ReasonTenantSuspended means the API key is valid but its tenant is
	// suspended by the operator; the metadata key "tenant_id" names the
	// tenant. Retrying or rotating the key does not help.
	ReasonTenantSuspended = "TENANT_SUSPENDED"
)

// Messages of the status errors, fixed so that clients get the same answer
// whatever was wrong with their credential.
const (
	msgMissingCredentials = "missing credentials: send authorization: Bearer <api key>"
	msgInvalidCredentials = "invalid credentials"
)

// MethodPolicy says who may call one gRPC method. Exactly one of four shapes
// is valid: Public, Admin, AnyTenantKey, or a tenant method with a valid Scope.
type MethodPolicy struct {
	// Public methods (health, reflection) skip authentication entirely.
	Public bool
	// Admin methods accept only the admin token.
	Admin bool
	// AnyTenantKey methods accept any valid tenant API key with at least one
	// scope, whichever it is: a tenant's self-service methods (its own limits
	// and usage) that every key of the tenant may read. The admin token is
	// refused, as on every tenant method: the admin is not a tenant.
	AnyTenantKey bool
	// Scope is the scope a tenant API key needs for the method; it is required
	// when the method is neither Public, Admin nor AnyTenantKey.
	Scope Scope
}

func (p MethodPolicy) validate() error {
	shapes := 0
	for _, set := range []bool{p.Public, p.Admin, p.AnyTenantKey} {
		if set {
			shapes++
		}
	}
	switch {
	case shapes > 1:
		return fmt.Errorf("more than one of Public, Admin and AnyTenantKey set (%+v)", p)
	case shapes == 1 && p.Scope != ScopeUnspecified:
		return fmt.Errorf("scope %s set on a public, admin or any-tenant-key method", p.Scope)
	case shapes == 0 && !p.Scope.Valid():
		return fmt.Errorf("tenant method needs a valid scope, has %s", p.Scope)
	}
	return nil
}

// ValidatePolicies returns every problem with a policy map, joined: a policy
// of none of the valid shapes, or a key that is not a full method name
// ("/package.Service/Method"). The interceptors deny methods whose policy is
// invalid; calling this at startup turns such mistakes into a failed start.
func ValidatePolicies(policies map[string]MethodPolicy) error {
	var errs []error
	for _, method := range slices.Sorted(maps.Keys(policies)) {
		if service, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/"); !strings.HasPrefix(method, "/") || !ok || service == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("auth: policy for %q: not a full method name like /package.Service/Method", method))
		}
		if err := policies[method].validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth: policy for %s: %w", method, err))
		}
	}
	return errors.Join(errs...)
}

// UnaryServerInterceptor authenticates and authorizes unary calls by policies,
// keyed by full method name ("/abacus.ingest.v1.IngestService/Ingest"). A method
// without a valid policy is denied (fail closed). On success the handler's
// context carries the [Principal] and, for tenant keys, the tenant
// (tenancy.NewContext).
func (a *Authenticator) UnaryServerInterceptor(policies map[string]MethodPolicy) grpc.UnaryServerInterceptor {
	compiled := a.compilePolicies(policies)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, compiled, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is the streaming counterpart of
// [Authenticator.UnaryServerInterceptor]; the stream's Context carries the
// principal and tenant.
func (a *Authenticator) StreamServerInterceptor(policies map[string]MethodPolicy) grpc.StreamServerInterceptor {
	compiled := a.compilePolicies(policies)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), compiled, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

// compilePolicies copies the map, so later changes by the caller cannot race
// with requests, and drops invalid policies, so those methods are denied.
func (a *Authenticator) compilePolicies(policies map[string]MethodPolicy) map[string]MethodPolicy {
	out := make(map[string]MethodPolicy, len(policies))
	for method, p := range policies {
		if err := p.validate(); err != nil {
			a.logger.Error("invalid auth policy; the method will be denied",
				slog.String("rpc.method", method), slog.Any("error", err))
			continue
		}
		out[method] = p
	}
	return out
}

// authorize applies the policy of method to the credential in ctx and returns
// the context for the handler, or a status error.
func (a *Authenticator) authorize(ctx context.Context, policies map[string]MethodPolicy, method string) (context.Context, error) {
	policy, ok := policies[method]
	if !ok {
		return nil, a.deny(ctx, method, codes.PermissionDenied, "method is not permitted", ReasonMethodNotAllowed, nil)
	}
	if policy.Public {
		return ctx, nil
	}

	token, err := bearerFromMetadata(ctx)
	switch {
	case errors.Is(err, errNoCredentials):
		a.metrics.requests.WithLabelValues(resultMissing).Inc()
		return nil, statusError(codes.Unauthenticated, msgMissingCredentials, ReasonMissingCredentials, nil)
	case err != nil:
		a.metrics.requests.WithLabelValues(resultMalformedAuthz).Inc()
		a.logger.DebugContext(ctx, "authentication rejected",
			slog.String("reason", resultMalformedAuthz), slog.String("rpc.method", method), slog.String("detail", err.Error()))
		return nil, statusError(codes.Unauthenticated, msgInvalidCredentials, ReasonInvalidCredentials, nil)
	}

	p, err := a.authenticate(ctx, token)
	if err != nil {
		return nil, a.authError(ctx, method, err)
	}

	switch {
	case policy.Admin && !p.Admin:
		return nil, a.deny(ctx, method, codes.PermissionDenied,
			"this method requires the admin token; API keys cannot call it", ReasonAdminRequired, nil)
	case !policy.Admin && p.Admin:
		return nil, a.deny(ctx, method, codes.PermissionDenied,
			"the admin token is not a tenant credential; call this method with a tenant API key", ReasonTenantKeyRequired, nil)
	case policy.AnyTenantKey && p.Scopes == 0:
		return nil, a.deny(ctx, method, codes.PermissionDenied,
			"API key has no scopes; this method accepts a key with any scope", ReasonMissingScope, nil)
	case !policy.Admin && !policy.AnyTenantKey && !p.Scopes.Has(policy.Scope):
		return nil, a.deny(ctx, method, codes.PermissionDenied,
			fmt.Sprintf("API key lacks scope %s, which this method requires", policy.Scope), ReasonMissingScope,
			map[string]string{"required_scope": policy.Scope.String()})
	}

	ctx = WithPrincipal(ctx, p)
	if !p.Admin {
		ctx = tenancy.NewContext(ctx, p.Tenant)
	}
	return ctx, nil
}

// deny counts and returns a policy denial.
func (a *Authenticator) deny(ctx context.Context, method string, code codes.Code, msg, reason string, md map[string]string) error {
	a.metrics.denied.WithLabelValues(reason).Inc()
	a.logger.DebugContext(ctx, "request denied by auth policy", slog.String("rpc.method", method), slog.String("reason", reason))
	return statusError(code, msg, reason, md)
}

// authError turns an authentication error into the status the client sees.
func (a *Authenticator) authError(ctx context.Context, method string, err error) error {
	var suspended *TenantSuspendedError
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return statusError(codes.Unauthenticated, msgInvalidCredentials, ReasonInvalidCredentials, nil)
	case errors.As(err, &suspended):
		// Only a caller holding the key's secret gets here, so the tenant and
		// its state are its own to know.
		tenant := suspended.Tenant.String()
		return statusError(codes.PermissionDenied,
			"tenant "+tenant+" is suspended; contact the operator of this service to reactivate it",
			ReasonTenantSuspended, map[string]string{"tenant_id": tenant})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, ErrUnavailable):
		// Already logged with its cause by the lookup; the client learns only
		// that it may retry.
		return statusError(codes.Unavailable, "credentials cannot be checked right now; retry with backoff", ReasonAuthUnavailable, nil)
	default:
		a.logger.ErrorContext(ctx, "authentication failed unexpectedly", slog.String("rpc.method", method), slog.Any("error", err))
		return status.Error(codes.Internal, "internal error")
	}
}

func statusError(code codes.Code, msg, reason string, md map[string]string) error {
	st := status.New(code, msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md})
	if err != nil {
		return st.Err()
	}
	return withInfo.Err()
}

// bearerFromMetadata returns the bearer token of the request's authorization
// metadata. An absent value, an empty one and a bare "Bearer" all count as no
// credentials: the client forgot its key, which a hint can fix.
func bearerFromMetadata(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	switch len(values) {
	case 0:
		return "", errNoCredentials
	case 1:
	default:
		return "", errMultipleAuthzMD
	}
	token, ok := parseBearer(values[0])
	switch {
	case !ok:
		return "", errMalformedBearer
	case token == "":
		return "", errNoCredentials
	}
	return token, nil
}

// parseBearer parses an authorization value of the form "Bearer <token>"
// (RFC 6750: the scheme is case-insensitive; surrounding spaces and tabs are
// ignored). ok is false for any other form; token is empty with ok true when
// the value holds no token at all. A token is one or more visible ASCII
// characters.
func parseBearer(v string) (token string, ok bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return "", true
	}
	scheme, token, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	for i := range len(token) {
		if b := token[i]; b < 0x21 || b > 0x7e {
			return "", false
		}
	}
	return token, true
}
