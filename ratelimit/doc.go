// Package ratelimit enforces per-tenant rate limits and monthly event quotas
// shared by every node through Redis, and limits failed authentications per
// client address.
//
// # Rate limits
//
// [Limiter.AllowN] takes up to n units from a GCRA bucket named by (tenant,
// kind) — kind is "events", "requests", "queries" — and says how many were
// allowed, how many remain and when to retry. The bucket lives in Redis
// (github.com/go-redis/redis_rate, a Lua script using the Redis server's
// clock), so all nodes share one limit. Rates may be fractional; they are
// expressed to the script as whole units per 10^k seconds, exact to 0.01 %.
// A partial grant takes exactly the whole units that fit. redis_rate's
// AllowAtMost is not used for it because it also consumes the fraction of a
// unit it does not grant, up to one unit lost per partial grant; instead an
// all-or-nothing AllowN is tried first (one Redis call for every decision
// that is not partial), and after its refusal, which changes nothing, the
// whole units available are taken.
//
// Keys: "rate:" (added by redis_rate) + Config.KeyPrefix + "{tenant}:{kind}",
// e.g. "rate:abacus:rl:acme:events". Tenant IDs are validated by
// tenancy.ParseID (lowercase letters, digits, hyphens) and kinds are
// [a-z0-9_], so neither can contain the ":" separator or forge another
// bucket's key. The per-address buckets of [AuthFailureGuard] use an empty
// tenant segment, "rate:abacus:rl::auth_failures:{address}", which no
// tenant bucket can have.
//
// # One round trip per ingest batch
//
// Ingest asks three things of every batch: one unit of the tenant's request
// rate, one unit per valid event of its event rate, and room in its monthly
// quota. [Admitter] decides all three in one Redis script (its own GCRA on
// two buckets and the quota counter, atomically), so a batch costs one round
// trip instead of three, and events the quota refuses take nothing from the
// event rate. It shares the Limiter's fallback and the Quota's fail-open
// counting when Redis is unreachable.
//
// # Fallback while Redis is unreachable
//
// A Redis error or a call slower than Config.RedisTimeout (50ms) does not
// fail the request: the decision is made by a per-node token bucket
// (golang.org/x/time/rate) holding Config.LocalShare of the limit, and the
// Result says Local. The limiter is then degraded: the gauge
// abacus_ratelimit_fallback_active is 1, one warning is logged, and further
// decisions are made locally without touching Redis, except one probe every
// Config.ProbeInterval (1s); the first probe Redis answers ends the fallback
// with one info log. With the default LocalShare of 1, each node alone
// grants the whole limit, so N nodes may admit up to N times the limit
// during an outage; operators with N evenly loaded nodes can set 1/N to stay
// under it at the price of throttling tenants whose traffic is uneven.
//
// # Monthly quotas
//
// [Quota.Reserve] counts events against a tenant's hard monthly quota
// (calendar month, UTC: tenancy.MonthPeriod) with one Lua script that reads
// the counter, grants min(n, hard-used) and adds the grant, so concurrent
// reservations on any number of nodes never exceed the quota. Events that
// are then not accepted (the Kafka write failed) are given back with
// [Quota.Refund]. Counters are "abacus:quota:{tenant}:{YYYY-MM}" and expire
// 35 days after their month, so last month's usage stays readable.
//
// Policy when Redis is unreachable: fail open. Ingest must not stop because
// the counter store is down, so Reserve grants every event it is asked for,
// marks the result Local and counts the grant in memory per (tenant, month);
// abacus_quota_fail_open_total counts such reservations and
// abacus_quota_fail_open_active is 1 meanwhile. [Quota.Run] adds the
// counts kept in memory to Redis every second once it answers again (and
// once more, best effort, when its context ends), so usage is not lost; a
// tenant may exceed its hard quota by what it sends during the outage. Two
// edge cases err towards counting too much rather than too little: a
// reservation whose reply was lost after Redis applied it is counted again
// in memory, and so is a flush whose reply was lost. Counts not flushed when
// the process exits are lost and logged.
//
// # Failed authentications
//
// [AuthFailureGuard] sits just before the auth interceptor. Every call that
// ends in codes.Unauthenticated takes one unit from its client address's
// bucket (Redis, with the same fallback); an address whose bucket is empty
// is refused with codes.ResourceExhausted and RetryInfo until a unit has
// refilled, without its credentials being checked. Successful calls cost
// nothing: the check before a call only reads a per-node memory of blocked
// addresses, filled when a failure empties a bucket, so no Redis round trip
// is added to the request path. The client address is the peer's IP (IPv6
// by /64); for loopback peers — our REST gateway — it is the last
// x-forwarded-for entry, which grpc-gateway sets to the HTTP client's
// address.
package ratelimit
