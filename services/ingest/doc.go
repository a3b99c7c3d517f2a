// Package ingest implements abacus.ingest.v1.IngestService: it judges every
// event of a batch on its own, writes the accepted ones to the event log as one
// batch, and answers with a verdict per event that was not accepted.
//
// # Verdicts
//
// Each event gets exactly one verdict: accepted, or rejected with the first
// failing check's RejectReason and a message that names the field
// and the limit. The checks, in order:
//
//  1. every string (event_id, type, user_id, session_id, property keys and
//     values) is valid UTF-8 (the contract decodes them without checking, so
//     one bad event cannot fail its batch);
//  2. the protovalidate rules of ingest.proto's Event (checked by hand first,
//     see fastcheck.go; protovalidate decides and explains whenever that
//     check is not certain);
//  3. the tenant's own limits (Config.Limits): properties per event, the
//     timestamp window around now, the encoded size;
//
// and events past the tenant's batch limit are rejected with BATCH_TOO_LARGE
// without being looked at (send them again in another batch).
//
// # Limits and throttling
//
// Valid events are then admitted under the tenant's limits, shared by every
// node through Config.RateLimiter and Config.Quota: first the request rate
// (one unit per request or stream batch; when it is exceeded the whole batch
// is refused), then the event rate (GCRA, counting events) and the monthly
// quota. Events are admitted in batch order; those that do not fit get
// REJECT_REASON_RATE_LIMITED or REJECT_REASON_QUOTA_EXHAUSTED with the delay
// after which each would fit, so nothing is ever dropped with a success
// answer. Rate limiting happens here, after validation, rather than in an
// interceptor, because it counts valid events, not requests. A unary Ingest
// of which no event is admitted fails with [ThrottledError]
// (RESOURCE_EXHAUSTED with RetryInfo, QuotaFailure and ErrorInfo; HTTP 429);
// every unary answer carries the ratelimit-* metadata the REST gateway turns
// into RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers. A
// stream re-checks its API key before each batch (Config.Keys), so a
// revoked key or a suspended tenant (REJECT_REASON_TENANT_SUSPENDED) reaches
// open streams within the authenticator's cache TTL.
//
// A unary Ingest in which at least one event is accepted succeeds and lists
// the rejected events in the response (partial success, as in OTLP). One in
// which no event is accepted fails with [NothingAcceptedError]:
// INVALID_ARGUMENT (HTTP 400) with a BadRequest detail naming events[i] and
// its reason, so a client that only checks the status still learns that
// nothing was kept. A stream always answers with verdicts.
//
// # Durability
//
// The accepted events of a request go to the event log in one Produce call,
// and the answer waits for it: nothing is reported accepted unless Kafka
// acknowledged it (ARCHITECTURE.md, invariant 2). When the write fails, a
// unary Ingest fails as a whole with [UnavailableError] (retryable; the
// error-mapping interceptor makes it UNAVAILABLE with a RetryInfo), while a
// stream answers that batch with REJECT_REASON_UNAVAILABLE verdicts and stays
// open. A client retries with the same event_ids; the rollup deduplicates, so
// a write that landed after all is not counted twice.
//
// # Streams
//
// A server that registers the service with [Service.Register] judges
// IngestStream batches as they arrived, in their protobuf encoding, and
// writes the accepted events' own bytes to the event log (see wire.go):
// verdicts are those of the decoded path, at a fraction of its cost.
// [Service.Drain] ends every stream when the process stops: each answers
// the batches it is processing and ends with UNAVAILABLE.
//
// IngestStream reads batches in one goroutine, judges and writes up to
// Config.MaxInFlightPerStream of them at once, and answers from a single
// sender goroutine, in completion order, each response carrying its batch's
// sequence. When that many batches are in flight it stops reading, so a fast
// client cannot make the server buffer without bound. End of input (the
// client's CloseSend) ends the stream after every read batch is answered; a
// canceled stream abandons the batches in flight.
package ingest
