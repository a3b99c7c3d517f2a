// Command ingestbench measures abacusd's ingest path on this machine, in one
// run, against the machine's own limit:
//
//  1. it starts a private PostgreSQL and Redis (internal/devstack) and an
//     in-process Kafka-protocol broker (kfake) in its own process, so that the
//     memory abacusd reports is abacusd's alone;
//  2. it runs `abacusd migrate`, then `abacusd serve --roles=admin` just long
//     enough to create the benchmark's tenants with high rate limits;
//  3. phase "bare": `abacus-loadgen bare-server` (gRPC + protobuf decoding and
//     nothing else) loaded by `abacus-loadgen` as fast as it answers;
//  4. phase "max": `abacusd serve --roles=ingest` loaded the same way;
//  5. phase "half": abacusd again, at half of the rate it accepted in "max",
//     for the latency of a server that is not saturated;
//  6. phase "bare" again (--bare-runs), with abacusd stopped: the better bare
//     run counts, because other work on the machine can only slow a run down;
//
// sampling abacusd's resident memory every 100 ms and reading its high-water
// mark at the end. It prints a table of the figures next to the targets,
// marked met or not met — reported, never asserted — and with --json-out
// writes them as JSON.
//
// The broker acknowledges every produce request (acks=all, idempotent
// sequences checked) but stores no records (kfake.BlackholeProduce): a phase
// at 500,000 events/s of ~200 bytes would otherwise hold gigabytes in the
// broker's memory, and nothing consumes them here. The rollup is not part of
// this benchmark.
//
// It builds nothing: `make bench` builds bin/abacusd and bin/abacus-loadgen
// first and passes their paths. See bench/README.md.
package main
