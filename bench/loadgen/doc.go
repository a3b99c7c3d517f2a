// Package loadgen drives IngestService.IngestStream at a fixed rate or as fast as the server
// answers, and measures what it gets back: events accepted, rejected (by reason) and throttled,
// and the batch-ack latency, from sending a batch to receiving the response that carries its
// sequence number. cmd/abacus-loadgen is its command line; bench/ingestbench runs it against
// the bare-decode baseline (bench/bareserver) and against abacusd on the same machine.
//
// # Shape of the load
//
// Config.Streams workers each own one gRPC connection. A worker picks the tenant of every batch
// from a Zipf distribution (tenant i gets a share ∝ 1/(i+1)^s) and sends it on that tenant's
// IngestStream, opened on first use on the worker's connection: the tenant comes from the API
// key in the stream's metadata, so each tenant needs a stream of its own. Up to Config.InFlight
// batches of a worker are unanswered at once (pipelining); the server answers in completion
// order, so responses are matched to batches by sequence number, never by position.
//
// The events look like a product's: a type from a small set (page_view, click, search, signup,
// checkout.completed, app.error), a user from a pool of Config.Users, a session, 3 to 5
// properties fitting the type, and a value on purchases and some page views; about 200 bytes
// each, encoded. Every event_id is "<run id>-<tenant, 4 hex digits>-<counter, 16 hex digits>"
// with a counter per tenant, so ids never repeat within a run or across runs, except for the
// share Config.DuplicateRatio of events that deliberately reuse an id already sent to the same
// tenant (to exercise deduplication).
//
// # A cheap generator
//
// The generator must not be what limits the measurement, so a worker encodes its InFlight
// batches once, by hand with protowire, and sends them as pre-encoded bytes through a
// client-side codec (grpc.ForceCodecV2 with the name "proto": the server sees an ordinary call
// and decodes with its usual codec; responses are decoded normally). Before each send only
// fixed-width parts are rewritten in place: the tenant and counter digits of every event_id,
// every timestamp's seconds (a 5-byte varint: the current second), every user_id's 8 digits,
// and the trailing sequence field. A buffer is reused only after the server answered its
// batch, so gRPC, which may still be writing the bytes after SendMsg returns, never sends
// bytes being rewritten; a batch lost with its stream gets a fresh buffer.
//
// # Measurement
//
// Batch-ack latencies go into an HdrHistogram (microseconds, 1 µs to 60 s, 3 significant
// digits). Config.Warmup excludes the first part of the run: the measured window runs from its
// end to the end of sending, and the measured batches are those sent in it (their answers may
// arrive while the run drains). Rate mode gives each batch the next slot of a schedule shared
// by all workers; a schedule that falls more than 100 ms behind skips the missed slots rather
// than bursting. Latency is measured from the actual send, so when the server falls behind,
// the achieved rate in the report (lower than the target) is the signal to look at.
//
// # Failures
//
// A stream that ends with an error (RESOURCE_EXHAUSTED, UNAVAILABLE, ...) is counted by code
// and reopened with jittered exponential backoff (50 ms to 2 s); its unanswered batches are
// counted as such and never resent. UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED and
// INVALID_ARGUMENT end the run with an error: retrying cannot help. Rejected and throttled
// events are counted by reason and not retried.
package loadgen
