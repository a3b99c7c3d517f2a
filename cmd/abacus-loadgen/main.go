// Command abacus-loadgen sends load to Abacus's IngestService and reports the
// throughput and batch-ack latency it measured; it also serves the bare-decode
// baseline that the ingest benchmark compares abacusd with.
//
// Usage:
//
//	abacus-loadgen [flags]               send load (see bench/loadgen)
//	abacus-loadgen bare-server [flags]   serve the bare-decode baseline (see bench/bareserver)
//
// The tenants come either from a keys file (--keys-file, lines of
// "<tenant_id> <api_key>") or are created before the run through the admin API
// (--admin-token, or ABACUS_ADMIN_TOKEN, which keeps the token out of the
// process list). A progress line goes to stderr every second; the report goes
// to stdout, as text or, with --json, as JSON. See bench/README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `abacus-loadgen sends load to Abacus's IngestService and reports what it measured.

Usage:
  abacus-loadgen [flags]               send load; 'abacus-loadgen -h' lists the flags
  abacus-loadgen bare-server [flags]   serve the bare-decode baseline (no auth, no validation,
                                       no Kafka); 'abacus-loadgen bare-server -h' lists the flags

Tenants come from --keys-file or are created with --admin-token (or ABACUS_ADMIN_TOKEN).
`

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "bare-server":
			return runBare(ctx, args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stderr, usage)
			return exitOK
		}
	}
	return runLoad(ctx, args, getenv, stdout, stderr)
}
