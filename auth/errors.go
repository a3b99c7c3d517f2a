package auth

import "errors"

var (
	// ErrMalformedKey is returned (wrapped, with the reason) by [ParseKey] for a
	// string that is not a well-formed API key: wrong prefix, length or
	// alphabet, or a checksum that does not match.
	ErrMalformedKey = errors.New("auth: malformed API key")

	// ErrUnauthenticated is the one error for every rejected credential:
	// malformed, unknown, revoked, expired or wrong secret, an inactive tenant,
	// or a wrong admin token. Callers must not be able to tell these apart; the
	// cause is only logged at debug level and counted in a metric.
	ErrUnauthenticated = errors.New("auth: invalid credentials")

	// ErrKeyNotFound is returned by a [KeyStore] when no API key has the
	// requested key ID.
	ErrKeyNotFound = errors.New("auth: API key not found")

	// ErrUnavailable wraps a [KeyStore] failure when no usable cached record
	// could stand in for it. It is retryable and maps to gRPC UNAVAILABLE; it is
	// never a verdict about the credential.
	ErrUnavailable = errors.New("auth: credential store unavailable")
)

// Errors of bearerFromMetadata; they stay inside the package.
var (
	errNoCredentials   = errors.New("no authorization metadata")
	errMalformedBearer = errors.New("authorization is not of the form \"Bearer <token>\"")
	errMultipleAuthzMD = errors.New("more than one authorization value")
)
