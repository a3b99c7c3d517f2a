package auth

import (
	"errors"

	"github.com/abacus-analytics/abacus/tenancy"
)

var (
	// ErrMalformedKey is returned (wrapped, with the reason) by [ParseKey] for a
	// string that is not a well-formed API key: wrong prefix, length or
	// alphabet, or a checksum that does not match.
	ErrMalformedKey = errors.New("auth: malformed API key")

	// ErrUnauthenticated is the one error for every rejected credential:
	// malformed, unknown, revoked, expired or wrong secret, or a wrong admin
	// token. Callers must not be able to tell these apart; the cause is only
	// logged at debug level and counted in a metric.
	ErrUnauthenticated = errors.New("auth: invalid credentials")

	// ErrTenantSuspended is matched (errors.Is) by the [*TenantSuspendedError]
	// returned for a valid, unrevoked, unexpired key whose tenant the operator
	// suspended. Unlike [ErrUnauthenticated] it names the state: only a caller
	// who holds the key's secret ever sees it.
	ErrTenantSuspended = errors.New("auth: tenant suspended")

	// ErrKeyNotFound is returned by a [KeyStore] when no API key has the
	// requested key ID.
	ErrKeyNotFound = errors.New("auth: API key not found")

	// ErrUnavailable wraps a [KeyStore] failure when no usable cached record
	// could stand in for it. It is retryable and maps to gRPC UNAVAILABLE; it is
	// never a verdict about the credential.
	ErrUnavailable = errors.New("auth: credential store unavailable")
)

// TenantSuspendedError is the error of a valid key whose tenant is
// suspended. It matches [ErrTenantSuspended].
type TenantSuspendedError struct {
	// Tenant owns the key and is suspended.
	Tenant tenancy.ID
}

func (e *TenantSuspendedError) Error() string {
	return "auth: tenant " + string(e.Tenant) + " is suspended"
}

// Is makes errors.Is(err, ErrTenantSuspended) true.
func (e *TenantSuspendedError) Is(target error) bool { return target == ErrTenantSuspended }

// Errors of bearerFromMetadata; they stay inside the package.
var (
	errNoCredentials   = errors.New("no authorization metadata")
	errMalformedBearer = errors.New("authorization is not of the form \"Bearer <token>\"")
	errMultipleAuthzMD = errors.New("more than one authorization value")
)
