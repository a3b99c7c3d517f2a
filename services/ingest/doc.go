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
//  2. the protovalidate rules of ingest.proto's Event;
//  3. the timestamp lies in the accepted window around now;
//  4. the encoded event is at most Config.MaxEventBytes;
//
// and events past Config.MaxBatchEvents are rejected with BATCH_TOO_LARGE
// without being looked at (send them again in another batch).
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
// IngestStream reads batches in one goroutine, judges and writes up to
// Config.MaxInFlightPerStream of them at once, and answers from a single
// sender goroutine, in completion order, each response carrying its batch's
// sequence. When that many batches are in flight it stops reading, so a fast
// client cannot make the server buffer without bound. End of input (the
// client's CloseSend) ends the stream after every read batch is answered; a
// canceled stream abandons the batches in flight.
package ingest
