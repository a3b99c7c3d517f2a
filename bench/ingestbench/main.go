package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	"github.com/abacus-analytics/abacus/internal/devstack"
)

// Bounds of the waits for the processes of the benchmark.
const (
	readyTimeout = time.Minute
	stopGrace    = 30 * time.Second
	// rssInterval is how often abacusd's resident memory is sampled.
	rssInterval = 100 * time.Millisecond
	// limitsSettle covers abacusd's limit refresh (ABACUS_LIMITS_REFRESH=1s below) before the
	// load starts, so that the tenants' raised limits are in force.
	limitsSettle = 2 * time.Second
)

// Config is the command line of ingestbench.
type Config struct {
	Abacusd   string
	Loadgen   string
	Duration  time.Duration // per phase, warmup included
	Warmup    time.Duration
	Tenants   int
	BatchSize int
	Streams   int // 0: the load generator's default
	InFlight  int
	ZipfS     float64
	BareRuns  int
	JSONOut   string
	WorkDir   string // empty: a temporary directory, removed at the end
	LogLevel  slog.Level
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	for name, path := range map[string]string{"--abacusd": c.Abacusd, "--loadgen": c.Loadgen} {
		st, err := os.Stat(path)
		switch {
		case path == "":
			errs = append(errs, fmt.Errorf("%s is required (make bench builds it into bin/)", name))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w (make bench builds it into bin/)", name, err))
		case st.IsDir() || st.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s %s is not an executable file", name, path))
		}
	}
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
	c := Config{}
	fs := flag.NewFlagSet("ingestbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Abacusd, "abacusd", "bin/abacusd", "abacusd binary")
	fs.StringVar(&c.Loadgen, "loadgen", "bin/abacus-loadgen", "abacus-loadgen binary")
	fs.DurationVar(&c.Duration, "duration", 13*time.Second, "length of each phase, warmup included")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "first part of each phase left out of the figures")
	fs.IntVar(&c.Tenants, "tenants", 8, "tenants the load is spread over (Zipf)")
	fs.IntVar(&c.BatchSize, "batch-size", loadgen.DefaultBatchSize, "events per batch")
	fs.IntVar(&c.Streams, "streams", 0, "load generator workers (0: 2 × GOMAXPROCS)")
	fs.IntVar(&c.InFlight, "in-flight", loadgen.DefaultInFlight, "unanswered batches per worker")
	fs.Float64Var(&c.ZipfS, "zipf-s", loadgen.DefaultZipfS, "skew of the tenant distribution")
	fs.IntVar(&c.BareRuns, "bare-runs", 2, "runs of the bare-decode phase, the first before abacusd's phases and the others after; the best counts")
	fs.StringVar(&c.JSONOut, "json-out", "", "also write the results as JSON to this file")
	fs.StringVar(&c.WorkDir, "work-dir", "", "directory for the servers' data and logs, kept afterwards (default: a temporary one, removed)")
	level := fs.String("log-level", "info", "log level of the benchmark's own messages")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: %w", *level, err))
	}
	errs = append(errs, c.Validate())
	return c, errors.Join(errs...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ingestbench: invalid command line:\n%v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	res, err := bench(ctx, cfg, logger, stderr)
	if res != nil {
		res.evaluate()
		if werr := writeTable(stdout, res); werr != nil {
			err = errors.Join(err, werr)
		}
		if cfg.JSONOut != "" {
			if werr := writeJSON(cfg.JSONOut, res); werr != nil {
				err = errors.Join(err, werr)
			} else {
				logger.Info("results written", "path", cfg.JSONOut)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ingestbench: %v\n", err)
		return 1
	}
	return 0
}

// bench runs the whole benchmark. It returns the results measured so far along with an error.
func bench(ctx context.Context, cfg Config, logger *slog.Logger, stderr io.Writer) (res *Result, err error) {
	for _, p := range []*string{&cfg.Abacusd, &cfg.Loadgen} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, err
		}
	}
	workDir := cfg.WorkDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "abacus-ingestbench-"); err != nil {
			return nil, err
		}
		defer func() {
			if rerr := os.RemoveAll(workDir); rerr != nil {
				logger.Warn("work directory not removed", "dir", workDir, "error", rerr)
			}
		}()
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	runID := loadgen.NewRunID()
	res = newResult(cfg, runID)
	logger.Info("ingest benchmark starting", "run_id", runID, "work_dir", workDir, "cpus", runtime.NumCPU())

	// Dependencies: durability traded for speed, as in tests; the broker keeps no records.
	pg, err := devstack.StartPostgres(ctx, filepath.Join(workDir, "postgres"), logger, devstack.Ephemeral())
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, pg.Stop()) }()
	if err := pg.CreateDatabase(ctx, devstack.DatabaseName); err != nil {
		return res, err
	}
	rds, err := devstack.StartRedis(ctx, filepath.Join(workDir, "redis"), logger, devstack.Ephemeral())
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, rds.Stop()) }()
	kafka, err := devstack.StartKafka(ctx, "", 0, logger, kfake.BlackholeProduce())
	if err != nil {
		return res, err
	}
	defer kafka.Stop()

	tokenBytes := make([]byte, 24)
	_, _ = rand.Read(tokenBytes)
	adminToken := hex.EncodeToString(tokenBytes)
	env := childEnv(map[string]string{
		"ABACUS_DATABASE_URL":                pg.URL(devstack.DatabaseName),
		"ABACUS_REDIS_URL":                   rds.URL(),
		"ABACUS_KAFKA_BROKERS":               strings.Join(kafka.Brokers(), ","),
		"ABACUS_ADMIN_TOKEN":                 adminToken,
		"ABACUS_LOG_LEVEL":                   "warn",
		"ABACUS_LOG_FORMAT":                  "json",
		"ABACUS_AUTO_MIGRATE":                "false",
		"ABACUS_LIMITS_REFRESH":              "1s",
		"ABACUS_DEFAULT_EVENTS_PER_SECOND":   strconv.Itoa(loadgen.MaxTenantRate),
		"ABACUS_DEFAULT_EVENTS_BURST":        "100000000",
		"ABACUS_DEFAULT_REQUESTS_PER_SECOND": "1000000",
	})

	logger.Info("applying migrations")
	migrateLog := filepath.Join(workDir, "abacusd-migrate.log")
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = runToEnd(mctx, cfg.Abacusd, []string{"migrate"}, env, migrateLog)
	cancel()
	if err != nil {
		return res, fmt.Errorf("abacusd migrate: %w\n%s", err, tailFile(migrateLog, 4096))
	}

	keys, err := createTenants(ctx, cfg, env, adminToken, runID, workDir, logger)
	if err != nil {
		return res, err
	}
	keysFile := filepath.Join(workDir, "keys")
	if err := writeKeys(keysFile, keys); err != nil {
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
	ingest, addr, err := startAbacusd(ctx, cfg.Abacusd, "ingest", env, workDir)
	if err != nil {
		return err
	}
	defer func() {
		if serr := ingest.stop(stopGrace); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	sampler := newRSSSampler(ingest.pid())
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
	if err := sleep(ctx, limitsSettle); err != nil {
		return err
	}

	logger.Info("phase max: abacusd at full speed")
	sampler.setPhase("max")
	res.Max, err = runLoadgen(ctx, cfg, addr, keysFile, runID+"max", 0, "max", stderr)
	sampler.setPhase("")
	res.RSS.PeakMax = sampler.peak("max")
	if err != nil {
		return fmt.Errorf("phase max: %w\nabacusd log:\n%s", err, ingest.logTail())
	}

	res.HalfRate = res.Max.AcceptedPerSecond / 2
	if res.HalfRate >= 1 {
		logger.Info("phase half: abacusd at half the rate it accepted", "rate", int64(res.HalfRate))
		sampler.setPhase("half")
		res.Half, err = runLoadgen(ctx, cfg, addr, keysFile, runID+"half", res.HalfRate, "half", stderr)
		sampler.setPhase("")
		res.RSS.PeakHalf = sampler.peak("half")
		if err != nil {
			return fmt.Errorf("phase half: %w\nabacusd log:\n%s", err, ingest.logTail())
		}
	} else {
		logger.Warn("phase half skipped: abacusd accepted nothing at full speed")
	}

	mem, err := readMemStatus(ingest.pid())
	if err != nil {
		return fmt.Errorf("read abacusd memory: %w", err)
	}
	res.RSS.HWM = mem.HWM
	res.RSS.Peak = sampler.peak("all")
	if exited, werr := ingest.exited(); exited {
		return fmt.Errorf("abacusd exited during the benchmark: %v\n%s", werr, ingest.logTail())
	}
	if n := countWarnings(ingest.log); n > 0 {
		logger.Warn("abacusd logged warnings during the benchmark", "lines", n, "log", ingest.log)
	}
	return nil
}

// childEnv is the environment of a child: the few variables a process needs from ours, none of
// our ABACUS_* ones, and vars.
func childEnv(vars map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runToEnd runs a command to completion with its output in logPath.
func runToEnd(ctx context.Context, bin string, args, env []string, logPath string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	c, err := startChild(filepath.Base(bin)+" "+args[0], cmd, logPath)
	if err != nil {
		return err
	}
	select {
	case <-c.Done():
		_, err := c.exited()
		return err
	case <-ctx.Done():
		_ = c.stop(5 * time.Second)
		return ctx.Err()
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	return addr, lis.Close()
}

// startAbacusd runs `abacusd serve --roles=<roles>` and waits until its gRPC health check
// answers SERVING. It returns the process and its gRPC address.
func startAbacusd(ctx context.Context, bin, roles string, env []string, workDir string) (*child, string, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(env[:len(env):len(env)], "ABACUS_ROLES="+roles, "ABACUS_GRPC_ADDR="+grpcAddr, "ABACUS_HTTP_ADDR="+httpAddr)
	c, err := startChild("abacusd "+roles, cmd, filepath.Join(workDir, "abacusd-"+roles+".log"))
	if err != nil {
		return nil, "", err
	}
	if err := waitServing(ctx, c, grpcAddr); err != nil {
		_ = c.stop(stopGrace)
		return nil, "", fmt.Errorf("abacusd %s: %w\n%s", roles, err, c.logTail())
	}
	return c, grpcAddr, nil
}

// waitServing polls the gRPC health service at addr until it answers SERVING.
func waitServing(ctx context.Context, c *child, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if exited, err := c.exited(); exited {
			return fmt.Errorf("exited before it was ready: %v", err)
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("not ready within %s: %w", readyTimeout, err)
		}
	}
}

// createTenants runs an admin-only abacusd just long enough to create the tenants, with rate
// limits high enough never to bind.
func createTenants(ctx context.Context, cfg Config, env []string, adminToken, runID, workDir string, logger *slog.Logger) ([]loadgen.TenantKey, error) {
	admin, addr, err := startAbacusd(ctx, cfg.Abacusd, "admin", env, workDir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = admin.stop(stopGrace) }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	keys, err := loadgen.Provision(pctx, conn, adminToken,
		loadgen.ProvisionConfig{RunID: runID, Tenants: cfg.Tenants, TenantRate: loadgen.MaxTenantRate}, logger)
	if err != nil {
		return nil, fmt.Errorf("create tenants: %w\nabacusd admin log:\n%s", err, admin.logTail())
	}
	return keys, nil
}

func writeKeys(path string, keys []loadgen.TenantKey) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := loadgen.FormatKeys(f, keys); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runBarePhase serves the bare-decode baseline and loads it at full speed.
func runBarePhase(ctx context.Context, cfg Config, keysFile, runID, phase, workDir string, stderr io.Writer) (*loadgen.Report, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(cfg.Loadgen, "bare-server", "--listen", "127.0.0.1:0", "--print-addr")
	cmd.Env = childEnv(nil)
	cmd.Stdout = w
	bare, err := startChild("bare-server", cmd, filepath.Join(workDir, phase+"-server.log"))
	w.Close() // the child has its own copy
	if err != nil {
		return nil, err
	}
	defer func() { _ = bare.stop(stopGrace) }()
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
	case <-time.After(readyTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("bare server printed no address: %q\n%s", addr, bare.logTail())
	}
	return runLoadgen(ctx, cfg, addr, keysFile, runID, 0, phase, stderr)
}

// runLoadgen runs abacus-loadgen against target and returns its report. Its progress lines go
// to stderr, prefixed with the phase.
func runLoadgen(ctx context.Context, cfg Config, target, keysFile, runID string, rate float64, phase string, stderr io.Writer) (*loadgen.Report, error) {
	args := []string{
		"--target", target, "--keys-file", keysFile, "--run-id", runID,
		"--duration", cfg.Duration.String(), "--warmup", cfg.Warmup.String(),
		"--batch-size", strconv.Itoa(cfg.BatchSize), "--streams", strconv.Itoa(cfg.Streams),
		"--in-flight", strconv.Itoa(cfg.InFlight), "--zipf-s", strconv.FormatFloat(cfg.ZipfS, 'g', -1, 64),
		"--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--json", "--log-level", "warn",
	}
	cmd := exec.CommandContext(ctx, cfg.Loadgen, args...)
	cmd.Env = childEnv(nil)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pw := &prefixWriter{w: stderr, prefix: "[" + phase + "] "}
	cmd.Stderr = pw
	err := cmd.Run()
	pw.flush()
	if err != nil {
		return nil, fmt.Errorf("abacus-loadgen: %w", err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("abacus-loadgen report: %w", err)
	}
	return &rep, nil
}

// prefixWriter writes every line with a prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i]); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a line that never ends
		p.flush()
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeJSON(path string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// countWarnings counts the lines of a JSON log at level WARN or ERROR.
func countWarnings(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Contains(line, []byte(`"level":"WARN"`)) || bytes.Contains(line, []byte(`"level":"ERROR"`)) {
			n++
		}
	}
	return n
}
