package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// Timing of the benchmark's own steps.
const (
	// rssInterval is how often abacusd's resident memory is sampled.
	rssInterval = 100 * time.Millisecond
	// limitsSettle covers abacusd's limit refresh (ABACUS_LIMITS_REFRESH=1s, harness.Stack.Env) before the
	// load starts, so that the tenants' raised limits are in force.
	limitsSettle = 2 * time.Second
)

// Config is the command line of ingestbench.
type Config struct {
	harness.Flags
	Duration  time.Duration // per phase, warmup included
	Warmup    time.Duration
	Tenants   int
	BatchSize int
	Streams   int // 0: the load generator's default
	InFlight  int
	ZipfS     float64
	BareRuns  int
}

// Validate reports every problem of the benchmark's own flags, joined.
func (c Config) Validate() error {
	var errs []error
	if c.Duration < 2*time.Second || c.Duration > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--duration is %v, must be 2s to 10m", c.Duration))
	}
	if c.Warmup < 0 || c.Warmup >= c.Duration {
		errs = append(errs, fmt.Errorf("--warmup is %v, must be ≥ 0 and shorter than --duration", c.Warmup))
	}
	if c.Tenants < 1 || c.Tenants > 100 {
		errs = append(errs, fmt.Errorf("--tenants is %d, must be 1 to 100", c.Tenants))
	}
	if c.BatchSize < 1 || c.BatchSize > loadgen.MaxBatchSize {
		errs = append(errs, fmt.Errorf("--batch-size is %d, must be 1 to %d", c.BatchSize, loadgen.MaxBatchSize))
	}
	if c.Streams < 0 || c.Streams > 256 {
		errs = append(errs, fmt.Errorf("--streams is %d, must be 0 (default) to 256", c.Streams))
	}
	if c.InFlight < 1 || c.InFlight > loadgen.MaxInFlight {
		errs = append(errs, fmt.Errorf("--in-flight is %d, must be 1 to %d", c.InFlight, loadgen.MaxInFlight))
	}
	if c.BareRuns < 1 || c.BareRuns > 5 {
		errs = append(errs, fmt.Errorf("--bare-runs is %d, must be 1 to 5", c.BareRuns))
	}
	if c.ZipfS < 0 || c.ZipfS > 10 {
		errs = append(errs, fmt.Errorf("--zipf-s is %v, must be 0 to 10", c.ZipfS))
	}
	return errors.Join(errs...)
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	var err error
	c.Flags, err = harness.ParseFlags("ingestbench", args, stderr, func(fs *flag.FlagSet) {
		fs.DurationVar(&c.Duration, "duration", 13*time.Second, "length of each phase, warmup included")
		fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "first part of each phase left out of the figures")
		fs.IntVar(&c.Tenants, "tenants", 8, "tenants the load is spread over (Zipf)")
		fs.IntVar(&c.BatchSize, "batch-size", loadgen.DefaultBatchSize, "events per batch")
		fs.IntVar(&c.Streams, "streams", 0, "load generator workers (0: 2 × GOMAXPROCS)")
		fs.IntVar(&c.InFlight, "in-flight", loadgen.DefaultInFlight, "unanswered batches per worker")
		fs.Float64Var(&c.ZipfS, "zipf-s", loadgen.DefaultZipfS, "skew of the tenant distribution")
		fs.IntVar(&c.BareRuns, "bare-runs", 2, "runs of the bare-decode phase, the first before abacusd's phases and the others after; the best counts")
	}, func() error { return c.Validate() })
	return c, err
}

func main() { harness.Main("ingestbench", parseFlags, bench) }

// bench runs the whole benchmark. It returns the results measured so far along with an error.
func bench(ctx context.Context, cfg Config, logger *slog.Logger, stderr io.Writer) (res *Result, err error) {
	runID := loadgen.NewRunID()
	res = newResult(cfg, runID)
	logger.Info("ingest benchmark starting", "run_id", runID, "cpus", runtime.NumCPU())
	// The broker keeps no records.
	stack, err := harness.StartStack(ctx, cfg.Flags, "ingestbench", logger, kfake.BlackholeProduce())
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, stack.Close()) }()
	env, workDir := stack.Env(), stack.WorkDir

	var keys []loadgen.TenantKey
	err = harness.WithAdmin(ctx, cfg.Abacusd, env, workDir, func(ctx context.Context, conn *grpc.ClientConn) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var err error
		keys, err = loadgen.Provision(pctx, conn, stack.AdminToken,
			loadgen.ProvisionConfig{RunID: runID, Tenants: cfg.Tenants, TenantRate: loadgen.MaxTenantRate}, logger)
		if err != nil {
			return fmt.Errorf("create tenants: %w", err)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	keysFile := filepath.Join(workDir, "keys")
	if err := harness.WriteKeys(keysFile, keys); err != nil {
		return res, err
	}

	// Phase "bare", the machine's limit for gRPC and protobuf decoding, is run before and after
	// abacusd's phases (with abacusd stopped), and the better run counts: other work on the
	// machine can only make a run slower.
	bare := func(i int) error {
		logger.Info("phase bare: bare-decode server at full speed", "run", i+1, "of", cfg.BareRuns)
		rep, err := runBarePhase(ctx, cfg, keysFile, fmt.Sprintf("%sbare%d", runID, i+1), fmt.Sprintf("bare%d", i+1), workDir, stderr)
		if err != nil {
			return fmt.Errorf("phase bare: %w", err)
		}
		res.addBare(rep)
		return nil
	}
	if err := bare(0); err != nil {
		return res, err
	}
	if err := abacusdPhases(ctx, cfg, env, keysFile, runID, workDir, res, logger, stderr); err != nil {
		return res, err
	}
	for i := 1; i < cfg.BareRuns; i++ {
		if err := bare(i); err != nil {
			return res, err
		}
	}
	return res, nil
}

// abacusdPhases runs phases "max" and "half" against one `abacusd serve --roles=ingest`,
// sampling its memory, and stops it.
func abacusdPhases(ctx context.Context, cfg Config, env []string, keysFile, runID, workDir string, res *Result, logger *slog.Logger, stderr io.Writer) (err error) {
	ingest, err := harness.StartAbacusd(ctx, cfg.Abacusd, "ingest", env, workDir)
	if err != nil {
		return err
	}
	defer func() {
		if serr := ingest.Terminate(harness.StopGrace); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	sampler := newRSSSampler(ingest.Pid())
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sampler.run(sctx, rssInterval)
	}()
	defer func() {
		stopSampling()
		<-sampled
	}()
	if err := harness.Sleep(ctx, limitsSettle); err != nil {
		return err
	}

	logger.Info("phase max: abacusd at full speed")
	sampler.setPhase("max")
	res.Max, err = runLoadgen(ctx, cfg, ingest.GRPCAddr, keysFile, runID+"max", 0, "max", stderr)
	sampler.setPhase("")
	res.RSS.PeakMax = sampler.peak("max")
	if err != nil {
		return fmt.Errorf("phase max: %w\nabacusd log:\n%s", err, ingest.LogTail())
	}

	res.HalfRate = res.Max.AcceptedPerSecond / 2
	if res.HalfRate >= 1 {
		logger.Info("phase half: abacusd at half the rate it accepted", "rate", int64(res.HalfRate))
		sampler.setPhase("half")
		res.Half, err = runLoadgen(ctx, cfg, ingest.GRPCAddr, keysFile, runID+"half", res.HalfRate, "half", stderr)
		sampler.setPhase("")
		res.RSS.PeakHalf = sampler.peak("half")
		if err != nil {
			return fmt.Errorf("phase half: %w\nabacusd log:\n%s", err, ingest.LogTail())
		}
	} else {
		logger.Warn("phase half skipped: abacusd accepted nothing at full speed")
	}

	mem, err := readMemStatus(ingest.Pid())
	if err != nil {
		return fmt.Errorf("read abacusd memory: %w", err)
	}
	res.RSS.HWM = mem.HWM
	res.RSS.Peak = sampler.peak("all")
	if exited, werr := ingest.Exited(); exited {
		return fmt.Errorf("abacusd exited during the benchmark: %v\n%s", werr, ingest.LogTail())
	}
	if n := harness.CountLogWarnings(ingest.LogPath()); n > 0 {
		logger.Warn("abacusd logged warnings during the benchmark", "lines", n, "log", ingest.LogPath())
	}
	return nil
}

// runBarePhase serves the bare-decode baseline and loads it at full speed.
func runBarePhase(ctx context.Context, cfg Config, keysFile, runID, phase, workDir string, stderr io.Writer) (*loadgen.Report, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(cfg.Loadgen, "bare-server", "--listen", "127.0.0.1:0", "--print-addr")
	cmd.Env = harness.ChildEnv(nil)
	cmd.Stdout = w
	bare, err := harness.StartChild("bare-server", cmd, filepath.Join(workDir, phase+"-server.log"))
	w.Close() // the child has its own copy
	if err != nil {
		return nil, err
	}
	defer func() { _ = bare.Terminate(harness.StopGrace) }()
	lines := make(chan string, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(io.LimitReader(r, 4096))
		if sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
	}()
	var addr string
	select {
	case addr = <-lines:
	case <-time.After(harness.ReadyTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("bare server printed no address: %q\n%s", addr, bare.LogTail())
	}
	return runLoadgen(ctx, cfg, addr, keysFile, runID, 0, phase, stderr)
}

// runLoadgen runs abacus-loadgen against target with the load of cfg and returns its report.
func runLoadgen(ctx context.Context, cfg Config, target, keysFile, runID string, rate float64, phase string, stderr io.Writer) (*loadgen.Report, error) {
	return harness.RunLoadgen(ctx, harness.LoadgenRun{
		Bin: cfg.Loadgen, Phase: phase, Target: target, KeysFile: keysFile, RunID: runID,
		Duration: cfg.Duration, Warmup: cfg.Warmup, BatchSize: cfg.BatchSize, Streams: cfg.Streams,
		InFlight: cfg.InFlight, ZipfS: cfg.ZipfS, Rate: rate,
	}, stderr)
}
