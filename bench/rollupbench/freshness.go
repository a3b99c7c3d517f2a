package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// probeTail is how long before the end of the background load the last probe is sent, so that
// every probe runs under the load.
const probeTail = time.Second

// freshnessResult is what the freshness phase measured.
type freshnessResult struct {
	// AckToVisible summarizes the probes whose event became visible, and the timed-out ones
	// at the probe timeout (a lower bound of their latency).
	AckToVisible loadgen.Latency `json:"ack_to_visible"`
	// IngestCall summarizes the probes' Ingest calls, from sending to the acknowledgement.
	IngestCall loadgen.Latency `json:"ingest_call"`
	// Probes were sent; TimedOut of them were not visible within the probe timeout, Failed
	// were not acknowledged (or the run ended before they were resolved).
	Probes   int `json:"probes"`
	TimedOut int `json:"timed_out"`
	Failed   int `json:"failed"`
	// Polls is the number of GetTimeSeries calls, PollErrors of them failed.
	Polls      int `json:"polls"`
	PollErrors int `json:"poll_errors"`
	// ErrorSamples are the first distinct errors of Ingest and GetTimeSeries calls.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Background is the load generator's report of the background load.
	Background *loadgen.Report `json:"background,omitempty"`
	// RolledUpPerSecond is the events the rollup consumer committed per second while the
	// probes ran (abacus_rollup_events_total), and LagRecords its lag when the load ended
	// (abacus_rollup_partition_lag, in records of up to a batch each): a consumer slower than
	// the load falls behind, and then freshness grows without bound.
	RolledUpPerSecond float64 `json:"rolled_up_per_second"`
	LagRecords        int64   `json:"lag_records"`
	// MachineBusy is the share of the machine's CPU time that was busy while the probes ran,
	// whoever used it.
	MachineBusy float64 `json:"machine_busy"`
}

// runFreshness runs abacusd with roles ingest, query and rollup, puts the background load of
// the tenants in keysFile on it, and meanwhile sends the probes with probeKey, a key with
// SCOPE_INGEST and SCOPE_QUERY of a tenant of their own.
func runFreshness(ctx context.Context, cfg Config, env []string, keysFile string, probeKey loadgen.TenantKey, runID, workDir string, logger *slog.Logger, stderr io.Writer) (res *freshnessResult, err error) {
	abacusd, err := harness.StartAbacusd(ctx, cfg.Abacusd, "ingest,query,rollup", env, workDir)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, abacusd.Terminate(harness.StopGrace)) }()
	if err := waitClaimed(ctx, abacusd); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(abacusd.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	logger.Info("phase freshness: background load and probes", "background_rate", cfg.BackgroundRate,
		"duration", cfg.FreshnessDuration, "probe_interval", cfg.ProbeInterval)
	loadStarted := time.Now()
	type loadOutcome struct {
		rep *loadgen.Report
		err error
	}
	loaded := make(chan loadOutcome, 1)
	go func() {
		rep, err := harness.RunLoadgen(ctx, harness.LoadgenRun{
			Bin: cfg.Loadgen, Phase: "background", Target: abacusd.GRPCAddr, KeysFile: keysFile, RunID: runID + "bg",
			Duration: cfg.FreshnessDuration, Warmup: cfg.FreshnessWarmup, BatchSize: loadgen.DefaultBatchSize,
			InFlight: loadgen.DefaultInFlight, ZipfS: loadgen.DefaultZipfS, Rate: cfg.BackgroundRate,
		}, stderr)
		loaded <- loadOutcome{rep, err}
	}()

	p := newProber(conn, probeKey, runID, loadStarted, cfg.ProbePoll, cfg.ProbeTimeout)
	var before, after rollupProgress
	probeErr := harness.Sleep(ctx, cfg.FreshnessWarmup)
	if probeErr == nil {
		before, probeErr = readRollupProgress(ctx, abacusd.HTTPAddr)
	}
	if probeErr == nil {
		p.run(ctx, cfg.ProbeInterval, maxProbes, loadStarted.Add(cfg.FreshnessDuration-probeTail))
	}
	load := <-loaded
	if probeErr == nil {
		after, probeErr = readRollupProgress(ctx, abacusd.HTTPAddr)
	}
	res = p.result()
	res.Background = load.rep
	if probeErr == nil {
		elapsed := after.at.Sub(before.at)
		res.RolledUpPerSecond = float64(after.events-before.events) / elapsed.Seconds()
		res.LagRecords = after.lag
		res.MachineBusy = float64(after.busy-before.busy) / float64(elapsed*time.Duration(runtime.NumCPU()))
	}
	if err := errors.Join(probeErr, load.err); err != nil {
		return res, fmt.Errorf("phase freshness: %w\nabacusd log:\n%s", err, abacusd.LogTail())
	}
	if exited, werr := abacusd.Exited(); exited {
		return res, fmt.Errorf("abacusd exited during the freshness phase: %v\n%s", werr, abacusd.LogTail())
	}
	if n := harness.CountLogWarnings(abacusd.LogPath()); n > 0 {
		logger.Warn("abacusd logged warnings during the freshness phase", "lines", n, "log", abacusd.LogPath())
	}
	return res, nil
}

// waitClaimed waits until abacusd's rollup consumer has joined the group and claimed its
// partitions, so that the probes do not measure the group's start.
func waitClaimed(ctx context.Context, abacusd *harness.Abacusd) error {
	ctx, cancel := context.WithTimeout(ctx, harness.ReadyTimeout)
	defer cancel()
	for {
		m, err := scrapeMetrics(ctx, abacusd.HTTPAddr)
		if err == nil && m["abacus_rollup_partition_claims_total"] > 0 {
			return nil
		}
		if err := harness.Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("the rollup consumer claimed no partition within %s (last error: %v)\n%s", harness.ReadyTimeout, err, abacusd.LogTail())
		}
	}
}

// rollupProgress is what abacusd's rollup consumer had done at one moment: the events of its
// committed batches and its lag in records; and the machine's CPU busy time so far.
type rollupProgress struct {
	at     time.Time
	events int64
	lag    int64
	busy   time.Duration
}

// readRollupProgress reads the rollup consumer's progress from abacusd's /metrics.
func readRollupProgress(ctx context.Context, httpAddr string) (rollupProgress, error) {
	m, err := scrapeMetrics(ctx, httpAddr)
	if err != nil {
		return rollupProgress{}, err
	}
	busy, err := machineBusy()
	if err != nil {
		return rollupProgress{}, err
	}
	p := rollupProgress{at: time.Now(), busy: busy}
	for key, v := range m {
		switch {
		case strings.HasPrefix(key, "abacus_rollup_events_total{"):
			p.events += int64(v)
		case strings.HasPrefix(key, "abacus_rollup_partition_lag{"):
			p.lag += int64(v)
		}
	}
	return p, nil
}
