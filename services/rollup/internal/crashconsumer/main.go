// Command crashconsumer runs the rollup consumer as a process of its own for
// the crash tests of package rollup, which kill it with SIGKILL at random
// moments and start it again.
//
// Flags say where PostgreSQL and the brokers are. With the environment
// variable ABACUS_ROLLUP_CRASH_AFTER_BATCH=N it kills itself (SIGKILL, so
// nothing is flushed or closed) right after its N-th batch is committed to
// the database and before that batch's advisory Kafka commit: the moment at
// which a consumer that trusted Kafka's offsets would read the batch again.
// Before it does, it writes CrashMarker to standard error. SIGINT or SIGTERM
// stop it cleanly, with exit status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// CrashAfterEnv names the environment variable that sets the batch after
// which the process kills itself.
const CrashAfterEnv = "ABACUS_ROLLUP_CRASH_AFTER_BATCH"

// CrashMarker starts the line written just before the process kills itself.
const CrashMarker = "CRASH-POINT"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crashconsumer:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		databaseURL      = flag.String("database-url", "", "PostgreSQL URL (required)")
		brokers          = flag.String("brokers", "", "comma-separated Kafka seed brokers (required)")
		group            = flag.String("group", rollup.DefaultGroup, "consumer group")
		maxPollRecords   = flag.Int("max-poll-records", 0, "records per poll (0: the consumer's default)")
		maxBatchEvents   = flag.Int("max-batch-events", 0, "events per transaction (0: the consumer's default)")
		sessionTimeout   = flag.Duration("session-timeout", 0, "group session timeout (0: the client's default)")
		rebalanceTimeout = flag.Duration("rebalance-timeout", 0, "group rebalance timeout (0: the client's default)")
		retryBackoff     = flag.Duration("retry-backoff", 0, "first retry delay (0: the consumer's default)")
	)
	flag.Parse()
	if *databaseURL == "" || *brokers == "" {
		return errors.New("-database-url and -brokers are required")
	}
	crashAfter := 0
	if v := os.Getenv(CrashAfterEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a positive batch number", CrashAfterEnv, v)
		}
		crashAfter = n
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	db, err := postgres.Open(openCtx, postgres.Config{URL: *databaseURL}, logger)
	if err != nil {
		return err
	}
	defer db.Close()

	var batches atomic.Int64 // AfterApply runs on every apply lane
	cfg := rollup.Config{
		Brokers:          strings.Split(*brokers, ","),
		Group:            *group,
		MaxPollRecords:   *maxPollRecords,
		MaxBatchEvents:   *maxBatchEvents,
		SessionTimeout:   *sessionTimeout,
		RebalanceTimeout: *rebalanceTimeout,
		RetryBackoff:     *retryBackoff,
		AfterApply: func() {
			n := batches.Add(1)
			if n != int64(crashAfter) {
				return
			}
			fmt.Fprintf(os.Stderr, "%s batch %d committed to the database, not yet to Kafka; killing the process\n", CrashMarker, n)
			self, err := os.FindProcess(os.Getpid())
			if err == nil {
				err = self.Kill() // SIGKILL
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "crashconsumer: kill itself:", err)
				os.Exit(3)
			}
			select {} // the signal is on its way
		},
	}
	c, err := rollup.New(cfg, db, logger, nil)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
