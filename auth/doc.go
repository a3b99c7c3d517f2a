// Package auth authenticates callers and authorizes them per gRPC method: tenant
// API keys (format, hashing, a cached lookup), the operator's admin token, and
// the interceptors that put the result into the request context.
//
// # API keys
//
// A key is 58 characters: "abk_", a 16-character key ID, a 32-character secret
// and a 6-character checksum, all in base62 (0-9A-Za-z):
//
//	abk_ 7fKq2Lm9Xc0Pa1Rt  Zb3...32 chars...Yw  0Hx4Qe
//	     key ID (≈95 bits)  secret (≈190 bits)   CRC32
//
// ID and secret come from crypto/rand. The checksum is the CRC-32 (IEEE) of
// everything before it, prefix included, as a zero-padded base62 number, so
// [ParseKey] rejects a typo or garbage without a store lookup (CRC-32 catches
// every single-character change and every swap of adjacent characters). The
// checksum is not a signature: a forged key with a valid checksum still fails on
// its hash.
//
// Only [HashSecret] of the complete key is stored, next to the key ID in clear;
// the full key is shown once, at creation. Logs carry the key ID at most.
//
// # Failures look alike
//
// Every rejected key — malformed, unknown, revoked, expired or wrong secret —
// is answered with the same [ErrUnauthenticated] and the same gRPC status. The
// cause goes only to a debug log line and to the result label of
// abacus_auth_requests_total. A failing store is not a verdict on the key: it
// yields [ErrUnavailable] (gRPC UNAVAILABLE), so clients retry instead of
// discarding a good key.
//
// One state is named: a key that passes every check but belongs to a
// suspended tenant gets PERMISSION_DENIED with reason [ReasonTenantSuspended]
// and the tenant's ID. The secret is compared first, in constant time, and
// revocation and expiry are checked before the tenant's state, so only the
// holder of a working key learns of the suspension — about a tenant that is
// its own — and it learns that rotating keys will not help.
//
// # Revocation latency
//
// Each node caches key records (not verdicts) for [Config].CacheTTL, default
// 3 seconds. Secret, revocation time, expiry time and tenant status are checked
// on every request against the current clock, so a key past its RevokedAt or
// ExpiresAt stops working at once. A revocation or suspension written to the
// store is seen by every node within CacheTTL of being committed, with no
// messages between nodes: that is the whole guarantee, and it is why CacheTTL
// is short.
//
// The one exception is a store outage: a node that cannot reach the store keeps
// using a record it already had for up to CacheTTL + [Config].StaleIfError
// after fetching it (default one minute), and answers UNAVAILABLE for keys it
// has no usable record of. Set StaleIfError negative to prefer strict
// revocation over availability.
//
// # Last use
//
// With [Config].Toucher set, each successful key authentication is reported to
// a [Toucher], which notes a key's use at most once per interval (default one
// minute) without touching the store on the request path, and whose Run loop
// writes the noted uses every few seconds through a [KeyToucher]. A key's
// recorded last use is therefore at most about an interval old.
//
// # Method policies
//
// [Authenticator.UnaryServerInterceptor] and
// [Authenticator.StreamServerInterceptor] take a [MethodPolicy] per full method
// name. Methods without a policy are denied. The admin token is accepted only
// by Admin methods; API keys only by tenant methods whose scope they carry, or
// by AnyTenantKey methods (a tenant's self-service reads), which take a key
// with any scope. Status errors carry an ErrorInfo detail (domain
// [ErrorDomain]) with a stable reason such as [ReasonMissingScope].
package auth
