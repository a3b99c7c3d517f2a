// Package bareserver is the bare-decode baseline of the ingest benchmark: an
// IngestService that decodes every batch with gRPC's ordinary proto codec and
// accepts all of its events, and does nothing else — no interceptors, no
// authentication, no validation, no Kafka.
//
// It runs with the transport settings of abacusd's gRPC server (the largest
// message, keepalive) and answers a stream the way abacusd does: up to
// MaxInFlightPerStream batches of one stream are handled at once and answered in
// completion order, each response carrying its batch's sequence. So the
// throughput a load generator reaches against it is what this machine can push
// through gRPC and protobuf decoding alone; abacusd's throughput on the same
// machine is reported as a share of it.
//
// cmd/abacus-loadgen serves it as the `bare-server` subcommand. It must never
// face real traffic: it authenticates nobody.
package bareserver
