package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/bench/loadgen"
	"github.com/abacus-analytics/abacus/eventlog"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// provisionTimeout bounds creating the tenants of the freshness phase.
const provisionTimeout = 2 * time.Minute

// Config is the command line of rollupbench.
type Config struct {
	harness.Flags
	// The consumer workload; see workload.
	Events      int
	Tenants     int
	TenantZipfS float64
	Users       int
	UserZipfS   float64
	BatchSize   int
	Partitions  int
	Span        time.Duration
	Seed        uint64
	// ConsumerTimeout bounds the consumer phase.
	ConsumerTimeout time.Duration
	// The freshness phase.
	FreshnessDuration time.Duration // of the background load, warmup included
	FreshnessWarmup   time.Duration
	BackgroundRate    float64
	BackgroundTenants int
	ProbeInterval     time.Duration
	ProbePoll         time.Duration
	ProbeTimeout      time.Duration
}

// Validate reports every problem of the benchmark's own flags, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Events < 100_000 || c.Events > 20_000_000 {
		bad("--events is %d, must be 100,000 to 20,000,000", c.Events)
	}
	if c.Tenants < 1 || c.Tenants > 1000 {
		bad("--tenants is %d, must be 1 to 1,000", c.Tenants)
	}
	if c.Users < 1 || c.Users > 10_000_000 {
		bad("--users is %d, must be 1 to 10,000,000", c.Users)
	}
	for name, s := range map[string]float64{"--tenant-zipf-s": c.TenantZipfS, "--user-zipf-s": c.UserZipfS} {
		if !(s >= 0 && s <= 10) {
			bad("%s is %v, must be 0 to 10", name, s)
		}
	}
	if c.BatchSize < 1 || c.BatchSize > loadgen.MaxBatchSize {
		bad("--batch-size is %d, must be 1 to %d", c.BatchSize, loadgen.MaxBatchSize)
	}
	if c.Partitions < 1 || c.Partitions > 64 {
		bad("--partitions is %d, must be 1 to 64", c.Partitions)
	}
	if c.Span < time.Minute || c.Span > 7*24*time.Hour {
		bad("--span is %v, must be 1m to 168h", c.Span)
	}
	if c.ConsumerTimeout < 10*time.Second || c.ConsumerTimeout > time.Hour {
		bad("--consumer-timeout is %v, must be 10s to 1h", c.ConsumerTimeout)
	}
	if c.FreshnessDuration < 5*time.Second || c.FreshnessDuration > 10*time.Minute {
		bad("--freshness-duration is %v, must be 5s to 10m", c.FreshnessDuration)
	}
	if c.FreshnessWarmup < 0 || c.FreshnessWarmup+probeTail+c.ProbeInterval > c.FreshnessDuration {
		bad("--freshness-warmup is %v, must be ≥ 0 and leave room for probes before the end of --freshness-duration (%v)", c.FreshnessWarmup, c.FreshnessDuration)
	}
	if !(c.BackgroundRate >= 1 && c.BackgroundRate <= loadgen.MaxTenantRate) {
		bad("--background-rate is %v, must be 1 to %d", c.BackgroundRate, loadgen.MaxTenantRate)
	}
	if c.BackgroundTenants < 1 || c.BackgroundTenants > 100 {
		bad("--background-tenants is %d, must be 1 to 100", c.BackgroundTenants)
	}
	if c.ProbeInterval < 10*time.Millisecond || c.ProbeInterval > 10*time.Second {
		bad("--probe-interval is %v, must be 10ms to 10s", c.ProbeInterval)
	}
	if c.ProbePoll < time.Millisecond || c.ProbePoll > time.Second {
		bad("--probe-poll is %v, must be 1ms to 1s", c.ProbePoll)
	}
	if c.ProbeInterval > 0 && c.FreshnessDuration/c.ProbeInterval > maxProbes {
		bad("--freshness-duration %v / --probe-interval %v makes more than %d probes", c.FreshnessDuration, c.ProbeInterval, maxProbes)
	}
	if c.ProbeTimeout < time.Second || c.ProbeTimeout > time.Minute {
		bad("--probe-timeout is %v, must be 1s to 1m", c.ProbeTimeout)
	}
	return errors.Join(errs...)
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	var err error
	c.Flags, err = harness.ParseFlags("rollupbench", args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&c.Events, "events", 1_000_000, "events produced for the consumer, 1 % of them duplicates")
		fs.IntVar(&c.Tenants, "tenants", 20, "tenants of the consumer workload")
		fs.Float64Var(&c.TenantZipfS, "tenant-zipf-s", loadgen.DefaultZipfS, "skew of the tenant distribution of the consumer workload")
		fs.IntVar(&c.Users, "users", 10_000, "users per tenant")
		fs.Float64Var(&c.UserZipfS, "user-zipf-s", 1, "skew of the user distribution")
		fs.IntVar(&c.BatchSize, "batch-size", loadgen.DefaultBatchSize, "events per produced batch (one ingest request, one record)")
		fs.IntVar(&c.Partitions, "partitions", 6, "partitions of the event topic")
		fs.DurationVar(&c.Span, "span", 3*time.Hour, "event times are spread over this much time before now (late events reach 6h further)")
		fs.Uint64Var(&c.Seed, "seed", 0, "seed of the workload (0: random)")
		fs.DurationVar(&c.ConsumerTimeout, "consumer-timeout", 5*time.Minute, "longest the consumer may take to apply everything")
		fs.DurationVar(&c.FreshnessDuration, "freshness-duration", 30*time.Second, "length of the background load of the freshness phase, warmup included")
		fs.DurationVar(&c.FreshnessWarmup, "freshness-warmup", 5*time.Second, "first part of the freshness phase without probes")
		fs.Float64Var(&c.BackgroundRate, "background-rate", 51_000, "events/s the load generator is asked for during the freshness phase (the probes count at ≥ 50,000 achieved)")
		fs.IntVar(&c.BackgroundTenants, "background-tenants", 20, "tenants of the background load")
		fs.DurationVar(&c.ProbeInterval, "probe-interval", 100*time.Millisecond, "time between two probes")
		fs.DurationVar(&c.ProbePoll, "probe-poll", 5*time.Millisecond, "time between two GetTimeSeries calls of a probe")
		fs.DurationVar(&c.ProbeTimeout, "probe-timeout", 10*time.Second, "longest a probe waits for its event")
	}, func() error { return c.Validate() })
	return c, err
}

func main() { harness.Main("rollupbench", parseFlags, bench) }

// bench runs the whole benchmark. It returns the results measured so far along with an error.
func bench(ctx context.Context, cfg Config, logger *slog.Logger, stderr io.Writer) (res *Result, err error) {
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	runID := loadgen.NewRunID()
	res = newResult(cfg, runID)
	logger.Info("rollup benchmark starting", "run_id", runID, "cpus", runtime.NumCPU())
	// The broker stores the records: the consumer reads them, and so does the baseline.
	stack, err := harness.StartStack(ctx, cfg.Flags, "rollupbench", logger)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, stack.Close()) }()
	workDir := stack.WorkDir
	tables := "TimescaleDB library absent, plain tables"
	if stack.Postgres.TimescaleAvailable() {
		tables = "TimescaleDB preloaded"
	}
	res.Postgres = "private cluster (internal/devstack), ephemeral: fsync off, as in tests; " + tables
	env := stack.Env()
	if err := eventlog.EnsureTopics(ctx, stack.KafkaBrokers, int32(cfg.Partitions), 1); err != nil {
		return res, err
	}
	keysFile := filepath.Join(workDir, "keys")
	probeKey, err := createTenants(ctx, cfg, stack, env, runID, keysFile, workDir, logger)
	if err != nil {
		return res, err
	}

	if err := consumerPhase(ctx, cfg, stack, env, runID, workDir, res, logger); err != nil {
		return res, err
	}
	logger.Info("phase freshness: abacusd with roles ingest, query and rollup")
	res.Freshness, err = runFreshness(ctx, cfg, env, keysFile, probeKey, runID, workDir, logger, stderr)
	return res, err
}

// consumerPhase produces the workload, measures the consumer on it and the raw COPY of the
// same rows, and checks the rollups.
func consumerPhase(ctx context.Context, cfg Config, stack *harness.Stack, env []string, runID, workDir string, res *Result, logger *slog.Logger) error {
	w := workload{
		RunID: runID, Events: cfg.Events, Tenants: cfg.Tenants, TenantZipfS: cfg.TenantZipfS,
		Users: cfg.Users, UserZipfS: cfg.UserZipfS, BatchSize: cfg.BatchSize, Span: cfg.Span,
		End: time.Now(), Seed: cfg.Seed,
	}
	logger.Info("producing the workload", "events", cfg.Events, "tenants", cfg.Tenants, "partitions", cfg.Partitions)
	prod, err := produce(ctx, w, stack.KafkaBrokers, logger)
	if err != nil {
		return fmt.Errorf("produce the workload: %w", err)
	}
	res.Workload = newWorkloadStats(prod)
	logger.Info("workload produced", "events", prod.Events, "duplicates", prod.Duplicates, "records", res.Workload.Records,
		"elapsed", prod.Elapsed.Round(time.Millisecond))

	logger.Info("phase consumer: abacusd with role rollup on the produced topic")
	run, err := runConsumer(ctx, cfg, stack, env, prod.End, workDir, logger)
	if err != nil {
		return fmt.Errorf("phase consumer: %w", err)
	}

	logger.Info("phase raw COPY: the same rows into copies of events, with and without its index")
	copies, index, err := copyBaseline(ctx, stack, prod.End, logger)
	if err != nil {
		return fmt.Errorf("phase raw COPY: %w", err)
	}
	if got := index.eventsApplied(prod.End); got != prod.Events {
		return fmt.Errorf("the topic holds %d events, %d were produced", got, prod.Events)
	}
	consumer := run.result(index)
	res.Consumer, res.Copy = &consumer, copies

	rolled, err := rolledUpEvents(ctx, stack.DatabaseURL, w.tenantIDs())
	if err != nil {
		return fmt.Errorf("check the rollups: %w", err)
	}
	res.Check = &check{RolledUp: rolled, Distinct: prod.Events - prod.Duplicates}
	return nil
}

// rolledUpEvents is the sum of rollups_1m.event_count over tenants.
func rolledUpEvents(ctx context.Context, url string, tenants []tenancy.ID) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ids := make([]string, len(tenants))
	for i, t := range tenants {
		ids[i] = string(t)
	}
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(event_count), 0) FROM rollups_1m WHERE tenant_id = ANY($1)`, ids).Scan(&n)
	return n, err
}

// createTenants creates, through an admin-only abacusd, the tenants of the background load
// (written to keysFile, with rate limits that never bind) and the probe tenant, whose key it
// returns.
func createTenants(ctx context.Context, cfg Config, stack *harness.Stack, env []string, runID, keysFile, workDir string, logger *slog.Logger) (loadgen.TenantKey, error) {
	var probe loadgen.TenantKey
	err := harness.WithAdmin(ctx, cfg.Abacusd, env, workDir, func(ctx context.Context, conn *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
		defer cancel()
		keys, err := loadgen.Provision(ctx, conn, stack.AdminToken,
			loadgen.ProvisionConfig{RunID: runID, Tenants: cfg.BackgroundTenants, TenantRate: loadgen.MaxTenantRate}, logger)
		if err != nil {
			return fmt.Errorf("create the background tenants: %w", err)
		}
		if err := harness.WriteKeys(keysFile, keys); err != nil {
			return err
		}
		probe, err = createProbeTenant(ctx, adminv1.NewAdminServiceClient(conn), stack.AdminToken, "probe-"+runID)
		return err
	})
	return probe, err
}

// createProbeTenant creates the probe tenant with a key that may ingest and query.
func createProbeTenant(ctx context.Context, admin adminv1.AdminServiceClient, adminToken, tenant string) (loadgen.TenantKey, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	if _, err := admin.CreateTenant(ctx, &adminv1.CreateTenantRequest{TenantId: tenant, DisplayName: "rollup benchmark probes"}); err != nil {
		return loadgen.TenantKey{}, fmt.Errorf("create the probe tenant: %w", err)
	}
	resp, err := admin.CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{
		TenantId: tenant, Scopes: []adminv1.Scope{adminv1.Scope_SCOPE_INGEST, adminv1.Scope_SCOPE_QUERY},
		DisplayName: "rollup benchmark probes",
	})
	if err != nil {
		return loadgen.TenantKey{}, fmt.Errorf("create the probe tenant's key: %w", err)
	}
	if resp.GetSecret() == "" {
		return loadgen.TenantKey{}, errors.New("create the probe tenant's key: the response has no secret")
	}
	return loadgen.TenantKey{Tenant: tenant, Secret: resp.GetSecret()}, nil
}
