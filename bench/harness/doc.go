// Package harness is what the benchmarks under bench/ share to run Abacus
// the way it runs in production, on this machine, in one run:
//
//   - [Main] is a benchmark command's main function: the common flags
//     ([ParseFlags]), then the benchmark, then its [Result] as a table and,
//     with --json-out, as JSON, also when the benchmark failed part way;
//   - [StartStack] starts, in the run's work directory, a private PostgreSQL
//     and Redis (internal/devstack, ephemeral) and an in-process
//     Kafka-protocol broker (kfake) inside the benchmark's own process, and
//     migrates the database; [Stack.Env] is the environment abacusd needs to
//     use them, with tenant limits raised so that they never bind;
//   - [StartAbacusd] runs `abacusd serve` with some roles as a child process
//     (supervised by devstack.Process, so the kernel stops it if the
//     benchmark dies) and waits until its gRPC health check answers SERVING;
//     [WithAdmin] runs an admin-only abacusd just long enough to create
//     tenants;
//   - [RunLoadgen] runs bench/loadgen's command line, abacus-loadgen, as a
//     child and returns its report;
//   - [Table] prints figures next to their targets, marked met or not met —
//     reported, never asserted — in the benchmarks' common layout.
//
// Every child writes its output to a log file in the run's work directory,
// and errors quote the end of that log.
package harness
