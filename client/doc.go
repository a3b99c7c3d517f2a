// Package client is the Go SDK with which tenant applications send events to
// Abacus. A [Client] keeps one long-lived IngestStream open, batches the
// events given to [Client.Send], pipelines up to Config.MaxInFlight batches,
// retries what can be retried, and reports the final [Verdict] of every event
// to Config.OnVerdict.
//
//	c, err := client.New(ctx, client.Config{Target: "ingest.abacus.example:443", APIKey: key,
//		OnVerdict: func(v client.Verdict) { ... }})
//	...
//	err = c.Send(ctx, &ingestv1.Event{Type: "page_view", UserId: "u1"})
//	...
//	err = c.Close(ctx) // flushes
//
// # Delivery guarantees
//
// Every event that Send or TrySend took (they returned nil) gets exactly one
// Verdict, delivered once to OnVerdict, whatever happens to the stream:
//
//   - Accepted: the server wrote the event durably (Kafka acknowledged it).
//     It is counted exactly once.
//   - Rejected (Reason set, Err nil): the server refused the event for a
//     reason that sending it again cannot change — invalid fields, a
//     timestamp outside the accepted window, a suspended tenant, a monthly
//     quota that resets more than [MaxQuotaRetryAfter] from now.
//   - Given up (Err set): the client stopped trying — retries exhausted
//     ([ErrRetriesExhausted]), a stream error that retrying cannot fix (for
//     example UNAUTHENTICATED for a revoked key), or Close's context ended
//     first ([ErrAbandoned]). A given-up event may or may not have been
//     accepted; sending it again with the same event_id is safe.
//
// Sending is at least once, counting is exactly once. Each event has its
// event_id from Send on (a UUIDv7 when the caller left it empty) and keeps
// it on every retry: retried events are put into new batches, never given
// new ids. The server deduplicates by (tenant, event_id) when it writes its
// rollups, so an event sent twice — for instance because a stream broke
// after the server had written the batch but before its answer arrived — may
// be written to Kafka twice but is counted once.
//
// Events are not delivered in order: batches are answered in the order they
// complete, and retried events join later batches. The buffer lives in
// memory: events not yet answered are lost if the process dies, so call
// Flush or Close before exiting.
//
// # Retries and throttling
//
// Verdicts REJECT_REASON_RATE_LIMITED and REJECT_REASON_UNAVAILABLE are
// retried; REJECT_REASON_QUOTA_EXHAUSTED only when its retry_after is at
// most [MaxQuotaRetryAfter]; every other reason is final. A retry waits the
// longer of the server's retry_after and an exponential backoff with full
// jitter (a random delay up to min(BackoffMax, BackoffBase·2^(n-1)) before
// the n-th retry), and each event is retried at most Config.MaxRetries times.
//
// A throttled client slows down rather than hammering the server: after a
// response with retry delays, no batch — new events or retries — is sent
// until the shortest of those delays has passed.
//
// When the server's per-batch limit is below Config.BatchSize, it rejects
// the events past its limit with REJECT_REASON_BATCH_TOO_LARGE without
// looking at them; the client lowers its batch size to the limit for the
// rest of its life and sends those events again.
//
// # Stream failures
//
// When the stream breaks — the server restarts, the network fails, a batch
// stays unanswered for Config.ResponseTimeout, or the server ends it with
// UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL or UNKNOWN — the
// client opens a new stream after a backoff (at least the RetryInfo delay
// of the error, if any) and sends every event of the unanswered batches
// again, with the same event_ids. Each such resend counts against
// MaxRetries. Other errors (UNAUTHENTICATED, PERMISSION_DENIED,
// INVALID_ARGUMENT, ...) give the events in flight a Verdict with that
// error. While no stream can be opened, events wait in the buffer; no event
// is given up for that alone.
//
// # Memory
//
// Config.BufferEvents and Config.BufferBytes bound everything the client
// holds: events queued, in flight, waiting for a retry, and final verdicts
// not yet delivered to OnVerdict. When the buffer is full, Send blocks until
// verdicts free room or its context ends, and TrySend returns
// [ErrBufferFull]. A single event larger than Config.MaxBatchBytes is
// refused with [ErrEventTooLarge].
//
// # Security
//
// The API key goes in `authorization: Bearer <key>` metadata, over TLS
// unless Config.Insecure is set. It is never logged, and Config's String,
// Format and LogValue redact it.
package client
