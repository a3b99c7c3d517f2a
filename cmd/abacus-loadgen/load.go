package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// loadFlags are the command line of a load run.
type loadFlags struct {
	cfg         loadgen.Config
	keysFile    string
	writeKeys   string
	adminToken  string
	adminTarget string
	tenants     int
	tenantRate  float64
	progress    time.Duration
	json        bool
	logLevel    slog.Level
}

// parseLoadFlags reads the command line. Bad values are all reported together.
func parseLoadFlags(args []string, getenv func(string) string, stderr io.Writer) (loadFlags, error) {
	var f loadFlags
	fs := flag.NewFlagSet("abacus-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	c := &f.cfg
	fs.StringVar(&c.Target, "target", loadgen.DefaultTarget, "gRPC address of the IngestService")
	fs.BoolVar(&c.AllowNonLoopback, "allow-non-loopback", false, "allow a --target (and --admin-target) that is not a loopback address")
	fs.StringVar(&f.keysFile, "keys-file", "", `file of "<tenant_id> <api_key>" lines, in Zipf rank order`)
	fs.StringVar(&f.adminToken, "admin-token", "", "create the tenants with this admin token (default $ABACUS_ADMIN_TOKEN; the environment keeps it out of the process list)")
	fs.StringVar(&f.adminTarget, "admin-target", "", "gRPC address of the AdminService (default: --target)")
	fs.IntVar(&f.tenants, "tenants", 4, "tenants to create with --admin-token, named loadgen-<run-id>-NN")
	fs.Float64Var(&f.tenantRate, "tenant-rate", 0, "events/s limit to set on each created tenant (burst 2 s of it); 0 keeps the server's defaults")
	fs.StringVar(&f.writeKeys, "write-keys", "", "write the created tenants' keys to this file (mode 0600) for later runs")
	fs.Float64Var(&c.ZipfS, "zipf-s", loadgen.DefaultZipfS, "skew of the tenant distribution: tenant i gets a share ∝ 1/(i+1)^s (0 = uniform)")
	fs.Float64Var(&c.Rate, "rate", 0, "target events/s over all streams; 0 = as fast as the server answers")
	fs.IntVar(&c.BatchSize, "batch-size", loadgen.DefaultBatchSize, "events per batch (1-10000)")
	fs.IntVar(&c.Streams, "streams", 0, "workers, each with its own connection and a stream per tenant (default 2 × GOMAXPROCS)")
	fs.IntVar(&c.InFlight, "in-flight", loadgen.DefaultInFlight, "unanswered batches per worker")
	fs.DurationVar(&c.Duration, "duration", loadgen.DefaultDuration, "how long to send, warmup included")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "first part of --duration left out of the report")
	fs.Float64Var(&c.DuplicateRatio, "duplicate-ratio", 0, "share of events re-sent with an id already used (0-1)")
	fs.IntVar(&c.Users, "users", loadgen.DefaultUsers, "size of the user_id pool")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed (0 = random)")
	fs.StringVar(&c.RunID, "run-id", "", "run id, part of every event id and tenant name, up to 16 of [a-z0-9] (default random)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", loadgen.DefaultDrainTimeout, "how long to wait for the answers to batches in flight at the end")
	fs.DurationVar(&f.progress, "progress", loadgen.DefaultProgressInterval, "interval of the progress line on stderr (0 = none)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", loadgen.DefaultMaxMessageBytes, "largest response accepted; a batch must fit too")
	fs.BoolVar(&f.json, "json", false, "write the report as JSON")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if f.adminToken == "" {
		f.adminToken = getenv("ABACUS_ADMIN_TOKEN")
	}
	if err := f.logLevel.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("log level %q: %w", *level, err))
	}
	switch {
	case f.keysFile != "" && f.adminToken != "":
		errs = append(errs, errors.New("give either --keys-file or an admin token, not both (unset ABACUS_ADMIN_TOKEN to use a keys file)"))
	case f.keysFile == "" && f.adminToken == "":
		errs = append(errs, errors.New("no tenants: give --keys-file or --admin-token (or ABACUS_ADMIN_TOKEN)"))
	}
	if f.writeKeys != "" && f.adminToken == "" {
		errs = append(errs, errors.New("--write-keys needs --admin-token: it saves the keys of the tenants created"))
	}
	if f.adminTarget == "" {
		f.adminTarget = c.Target
	}
	if c.RunID == "" {
		c.RunID = loadgen.NewRunID() // here, so that tenant names and event ids share it
	}
	if f.adminToken != "" {
		if err := loadgen.CheckLoopback(f.adminTarget); err != nil && !c.AllowNonLoopback {
			errs = append(errs, fmt.Errorf("admin target: %w (--allow-non-loopback permits it)", err))
		}
		pc := loadgen.ProvisionConfig{RunID: c.RunID, Tenants: f.tenants, TenantRate: f.tenantRate}
		if err := pc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if f.progress < 0 {
		errs = append(errs, fmt.Errorf("progress interval is %v, must not be negative", f.progress))
	}
	c.ProgressInterval = max(f.progress, 0)
	// The keys are read or created later; placeholders let Validate check everything else now.
	vc := *c
	vc.Tenants = make([]loadgen.TenantKey, min(max(f.tenants, 1), loadgen.MaxProvisionTenants))
	for i := range vc.Tenants {
		vc.Tenants[i] = loadgen.TenantKey{Tenant: loadgen.TenantName("x", i), Secret: "placeholder"}
	}
	if f.keysFile != "" {
		vc.Tenants = vc.Tenants[:1]
	}
	if err := vc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return f, errors.Join(errs...)
}

func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	f, err := parseLoadFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "abacus-loadgen: invalid command line:\n%v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: f.logLevel}))

	if f.keysFile != "" {
		f.cfg.Tenants, err = readKeys(f.keysFile)
	} else {
		f.cfg.Tenants, err = provision(ctx, f, logger)
	}
	if err != nil {
		fmt.Fprintf(stderr, "abacus-loadgen: %v\n", err)
		return exitFail
	}

	var progress func(loadgen.Progress)
	if f.progress > 0 {
		progress = func(p loadgen.Progress) { fmt.Fprintln(stderr, p.String()) }
	}
	logger.InfoContext(ctx, "load starting", "target", f.cfg.Target, "tenants", len(f.cfg.Tenants),
		"rate", f.cfg.Rate, "duration", f.cfg.Duration.String(), "warmup", f.cfg.Warmup.String(), "run_id", f.cfg.RunID)
	rep, runErr := loadgen.Run(ctx, f.cfg, progress)
	if rep.RunID != "" { // Run got past validation: there is something to report
		if err := writeReport(stdout, rep, f.json); err != nil {
			fmt.Fprintf(stderr, "abacus-loadgen: write report: %v\n", err)
			return exitFail
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "abacus-loadgen: %v\n", runErr)
		return exitFail
	}
	return exitOK
}

func writeReport(w io.Writer, rep loadgen.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}

func readKeys(path string) ([]loadgen.TenantKey, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	defer file.Close()
	keys, err := loadgen.ParseKeys(file)
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return keys, nil
}

// provision creates the run's tenants and, with --write-keys, saves their keys.
func provision(ctx context.Context, f loadFlags, logger *slog.Logger) ([]loadgen.TenantKey, error) {
	conn, err := grpc.NewClient(f.adminTarget, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("admin connection: %w", err)
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	keys, err := loadgen.Provision(pctx, conn, f.adminToken,
		loadgen.ProvisionConfig{RunID: f.cfg.RunID, Tenants: f.tenants, TenantRate: f.tenantRate}, logger)
	if err != nil {
		return nil, err
	}
	if f.writeKeys != "" {
		if err := writeKeysFile(f.writeKeys, keys); err != nil {
			return nil, err
		}
		logger.InfoContext(ctx, "keys written", "path", f.writeKeys, "tenants", len(keys))
	}
	return keys, nil
}

// writeKeysFile writes keys to path, readable by the owner only, replacing it atomically.
func writeKeysFile(path string, keys []loadgen.TenantKey) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keys-*")
	if err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write keys: %w", err)
	}
	if err := loadgen.FormatKeys(tmp, keys); err != nil {
		tmp.Close()
		return fmt.Errorf("write keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	return nil
}
