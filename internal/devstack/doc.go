// Package devstack starts the embedded dependencies that `abacusd dev` and
// every test package run against: a private PostgreSQL cluster built from the
// machine's PostgreSQL binaries, a private redis-server child, and an
// in-process Kafka-protocol broker (kfake).
//
// It exists for development and tests only. Production deployments point
// Abacus at real PostgreSQL/TimescaleDB, Redis and Kafka clusters; nothing in
// the production code path knows these servers are private, because callers
// reach them over TCP on 127.0.0.1 exactly as they would reach real servers.
//
// Each private server keeps its state in a directory of its own and records
// its port there (file "port"), so the next start on the same directory
// reuses the same data and, when it is still free, the same port. A lock file
// in the directory stops two processes from running the same server at once.
//
// Children are tied to this process: they run in their own process group (a
// Ctrl-C in the terminal reaches abacusd, which then stops them in order), and
// on Linux the kernel stops them when this process dies, even by SIGKILL.
// PostgreSQL left behind by an earlier run, and stale postmaster.pid files,
// are recovered on the next start.
//
// When running as root, initdb and postgres refuse to run, so they run as
// the "postgres" OS user: the cluster directory is chowned to it and every
// ancestor directory is given search permission (o+x) if it lacks it.
//
// Use [Ephemeral] for tests: it trades durability for speed (fsync=off for
// PostgreSQL, no append-only file for Redis). Package devstacktest wraps all
// of this for test packages.
package devstack
