package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/bench/loadgen"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable() // any executable file will do
	require.NoError(t, err)
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"--abacusd", bin, "--loadgen", bin, "--events", "200000", "--freshness-duration", "20s", "--json-out", "x.json"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 200_000, cfg.Events)
	require.Equal(t, 20, cfg.Tenants)
	require.Equal(t, 6, cfg.Partitions)
	require.Equal(t, 20*time.Second, cfg.FreshnessDuration)
	require.Equal(t, 100*time.Millisecond, cfg.ProbeInterval)
	require.InDelta(t, 51_000, cfg.BackgroundRate, 0)
	require.Equal(t, "x.json", cfg.JSONOut)

	_, err = parseFlags([]string{"--abacusd", filepath.Join(t.TempDir(), "none"), "--loadgen", t.TempDir(),
		"--events", "5", "--tenants", "0", "--users", "0", "--tenant-zipf-s", "-1", "--batch-size", "0", "--partitions", "0",
		"--span", "1s", "--consumer-timeout", "1s", "--freshness-duration", "1s", "--freshness-warmup", "2s",
		"--background-rate", "0", "--background-tenants", "0", "--probe-interval", "1ms", "--probe-poll", "0s",
		"--probe-timeout", "0s", "--log-level", "x", "more"}, &stderr)
	for _, want := range []string{"--abacusd", "is not an executable file", "--events is 5", "--tenants is 0", "--users is 0",
		"--tenant-zipf-s is -1", "--batch-size is 0", "--partitions is 0", "--span is 1s", "--consumer-timeout is 1s",
		"--freshness-duration is 1s", "--freshness-warmup is 2s", "--background-rate is 0", "--background-tenants is 0",
		"--probe-interval is 1ms", "--probe-poll is 0s", "--probe-timeout is 0s", `--log-level "x"`, "unexpected arguments: more"} {
		require.ErrorContains(t, err, want)
	}
}

// fullResult is a run in which every phase ran, with figures that meet every target.
func fullResult() Result {
	return Result{
		Settings: Settings{Tenants: 20, BatchSize: 500, Partitions: 6, BackgroundRate: 51_000, ProbeInterval: 100 * time.Millisecond},
		Workload: &workloadStats{Events: 1_000_000, Distinct: 990_000, Duplicates: 10_000, Records: 2_010},
		Consumer: &consumerResult{EventsPerSecond: 200_000, Window: 5 * time.Second, WindowEvents: 1_000_000, Transactions: 100,
			CPU: cpuUse{Abacusd: time.Second, Postgres: 6 * time.Second}},
		Copy: &copyResult{
			Indexed: copyRun{Rows: 1_000_000, EventsPerSecond: 250_000, PostgresCPU: 4 * time.Second},
			Plain:   copyRun{Rows: 1_000_000, EventsPerSecond: 400_000, PostgresCPU: 2 * time.Second},
		},
		Check: &check{RolledUp: 990_000, Distinct: 990_000},
		Freshness: &freshnessResult{
			AckToVisible: loadgen.Latency{Count: 250, P50: 40 * time.Millisecond, P90: 90 * time.Millisecond, P99: 200 * time.Millisecond, Max: 300 * time.Millisecond},
			IngestCall:   loadgen.Latency{Count: 250, P50: 2 * time.Millisecond, P99: 9 * time.Millisecond},
			Probes:       250,
			Background:   &loadgen.Report{AcceptedPerSecond: 50_900},
		},
	}
}

func TestResult_TargetsAndTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(r *Result)
		met     map[string]bool // of the measured targets
		inTable []string
	}{
		{
			name: "all met",
			edit: func(*Result) {},
			met: map[string]bool{targetNameConsumer: true, targetNameShare: true, targetNameCheck: true,
				targetNameFreshness: true, targetNameBackground: true},
			inTable: []string{"200,000", "0.80", "0.50", "990,000 / 990,000", "40 / 90 / 200 / 300 ms", "50,900", "6.00 s / 4.00 s / 2.00 s"},
		},
		{
			name: "none met",
			edit: func(r *Result) {
				r.Consumer.EventsPerSecond = 100_000
				r.Check.RolledUp = 989_999
				r.Freshness.AckToVisible.P99 = 600 * time.Millisecond
				r.Freshness.Background.AcceptedPerSecond = 49_999
			},
			met: map[string]bool{targetNameConsumer: false, targetNameShare: false, targetNameCheck: false,
				targetNameFreshness: false, targetNameBackground: false},
			inTable: []string{"NOT MET", "0.40", "989,999 / 990,000"},
		},
		{
			name: "fast freshness that does not count",
			edit: func(r *Result) {
				r.Freshness.AckToVisible.Count = 150
				r.Freshness.Failed = 2
				r.Freshness.Background.AcceptedPerSecond = 40_000
			},
			met: map[string]bool{targetNameConsumer: true, targetNameShare: true, targetNameCheck: true,
				targetNameFreshness: true, targetNameBackground: false},
			inTable: []string{"not counted: background below 50,000 ev/s; 150 probes, fewer than 200; 2 probes failed"},
		},
		{
			name: "stopped after the consumer",
			edit: func(r *Result) {
				r.Copy, r.Check, r.Freshness = nil, nil, nil
			},
			met:     map[string]bool{targetNameConsumer: true},
			inTable: []string{"200,000", "not run", "not measured"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := fullResult()
			tt.edit(&res)
			res.Evaluate()
			require.Len(t, res.Targets, 5, "every target is listed, measured or not")
			for _, target := range res.Targets {
				met, ok := tt.met[target.Name]
				require.Equal(t, ok, target.Measured, target.Name)
				require.Equal(t, met, target.Met, target.Name)
			}
			var out strings.Builder
			require.NoError(t, res.WriteTable(&out))
			for _, s := range tt.inTable {
				require.Contains(t, out.String(), s)
			}
			b, err := json.Marshal(&res)
			require.NoError(t, err)
			require.Contains(t, string(b), `"targets"`)
		})
	}
}
