package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/bench/bareserver"
	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// bareStopTimeout bounds the graceful stop of the bare server before it closes its streams.
const bareStopTimeout = 5 * time.Second

type bareFlags struct {
	listen           string
	printAddr        bool
	allowNonLoopback bool
	cfg              bareserver.Config
}

func parseBareFlags(args []string, stderr io.Writer) (bareFlags, error) {
	var f bareFlags
	fs := flag.NewFlagSet("abacus-loadgen bare-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "abacus-loadgen bare-server serves the bare-decode baseline: an IngestService that decodes\n"+
			"every batch and accepts all of it, with abacusd's transport settings and nothing else.\nIt authenticates nobody: keep it on a loopback address.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	fs.BoolVar(&f.printAddr, "print-addr", false, "write the address listened on to stdout, as the first line")
	fs.BoolVar(&f.allowNonLoopback, "allow-non-loopback", false, "allow a --listen address that is not a loopback address")
	fs.IntVar(&f.cfg.MaxRecvMsgBytes, "max-recv-bytes", bareserver.DefaultMaxRecvMsgBytes, "largest request message (abacusd: ABACUS_MAX_REQUEST_BYTES)")
	fs.IntVar(&f.cfg.MaxInFlightPerStream, "max-in-flight", bareserver.DefaultMaxInFlightPerStream, "batches of one stream handled at once")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if err := loadgen.CheckLoopback(f.listen); err != nil && !f.allowNonLoopback {
		errs = append(errs, fmt.Errorf("listen: %w (--allow-non-loopback permits it; the server authenticates nobody)", err))
	}
	if f.cfg.MaxRecvMsgBytes == 0 || f.cfg.MaxInFlightPerStream == 0 {
		errs = append(errs, errors.New("--max-recv-bytes and --max-in-flight must be positive"))
	}
	if err := f.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return f, errors.Join(errs...)
}

// runBare serves the baseline until ctx ends.
func runBare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseBareFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "abacus-loadgen bare-server: invalid command line:\n%v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := bareserver.NewServer(f.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "abacus-loadgen bare-server: %v\n", err)
		return exitFail
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", f.listen)
	if err != nil {
		fmt.Fprintf(stderr, "abacus-loadgen bare-server: %v\n", err)
		return exitFail
	}
	addr := lis.Addr().String()
	if f.printAddr {
		if _, err := fmt.Fprintln(stdout, addr); err != nil {
			_ = lis.Close()
			fmt.Fprintf(stderr, "abacus-loadgen bare-server: print address: %v\n", err)
			return exitFail
		}
	}
	logger.InfoContext(ctx, "bare-decode baseline serving; it authenticates nobody and validates nothing",
		"addr", addr, "max_recv_bytes", f.cfg.MaxRecvMsgBytes, "max_in_flight_per_stream", f.cfg.MaxInFlightPerStream)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "abacus-loadgen bare-server: %v\n", err)
		return exitFail
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(bareStopTimeout):
		srv.Stop()
		<-stopped
	}
	logger.Info("bare-decode baseline stopped")
	return exitOK
}
