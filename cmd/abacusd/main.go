// Command abacusd runs Abacus, the multi-tenant real-time analytics backend.
//
// Usage:
//
//	abacusd serve   [flags]   run the roles in --roles against external PostgreSQL, Redis and Kafka
//	abacusd dev     [flags]   run everything on this machine with zero configuration
//	abacusd migrate [flags]   apply the embedded database migrations and exit
//
// Every flag has an ABACUS_* environment equivalent; run `abacusd serve -h` to list them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-analytics/abacus/internal/app"
	"github.com/abacus-analytics/abacus/internal/config"
	"github.com/abacus-analytics/abacus/store/postgres"
)

const usage = `abacusd runs Abacus, the multi-tenant real-time analytics backend.

Usage:
  abacusd serve   [flags]   run the roles in --roles (default all) against external
                            PostgreSQL/TimescaleDB, Redis and Kafka
  abacusd dev     [flags]   run the whole system on this machine with zero configuration
                            (private PostgreSQL, Redis and in-process broker under --data-dir)
  abacusd migrate [flags]   apply the embedded database migrations and exit

Every flag has an ABACUS_* environment equivalent; see 'abacusd serve -h'.
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	cfg, err := config.Parse("abacusd "+cmd, rest, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		// Report every problem at once: the bad values and what validation finds in the rest.
		switch cmd {
		case "serve":
			err = errors.Join(err, cfg.Validate())
		case "dev":
			err = errors.Join(err, cfg.ValidateDev())
		}
		fmt.Fprintf(stderr, "abacusd: invalid configuration:\n%v\n", err)
		return 2
	}
	logger := newLogger(cfg, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "serve":
		err = serve(ctx, cfg, logger)
	case "dev":
		err = app.RunDev(ctx, cfg, logger, stdout)
	case "migrate":
		err = migrate(ctx, cfg, logger)
	default:
		fmt.Fprintf(stderr, "abacusd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		logger.Error("abacusd failed", "command", cmd, "error", err)
		fmt.Fprintf(stderr, "abacusd %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	a, err := app.New(cfg, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func migrate(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("database URL is required (ABACUS_DATABASE_URL)")
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: 2}, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := postgres.Migrate(ctx, db); err != nil {
		return err
	}
	logger.InfoContext(ctx, "migrations applied", "timescale", db.Timescale())
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
