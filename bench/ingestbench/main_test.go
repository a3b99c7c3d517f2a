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

const sampleStatus = `Name:	abacusd
Umask:	0022
State:	S (sleeping)
VmPeak:	 1843212 kB
VmSize:	 1843212 kB
VmHWM:	  215040 kB
VmRSS:	  180224 kB
RssAnon:	  150000 kB
Threads:	12
`

func TestParseMemStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    memStatus
		wantErr string
	}{
		{name: "linux status", in: sampleStatus, want: memStatus{RSS: 180224 << 10, HWM: 215040 << 10}},
		{name: "missing fields", in: "Name:\tx\nVmRSS:\t1 kB\n", wantErr: "no VmRSS or VmHWM"},
		{name: "bad unit", in: "VmRSS:\t1 MB\nVmHWM:\t1 kB\n", wantErr: `want "<n> kB"`},
		{name: "bad number", in: "VmRSS:\tx kB\nVmHWM:\t1 kB\n", wantErr: "bad size"},
		{name: "negative", in: "VmRSS:\t-1 kB\nVmHWM:\t1 kB\n", wantErr: "bad size"},
		{name: "empty", in: "", wantErr: "no VmRSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseMemStatus([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestReadMemStatus_Self(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc on this system")
	}
	m, err := readMemStatus(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, m.RSS)
	require.GreaterOrEqual(t, m.HWM, m.RSS)
}

func FuzzParseMemStatus(f *testing.F) {
	f.Add([]byte(sampleStatus))
	f.Add([]byte("VmRSS:\t1 kB\nVmHWM:\t2 kB\n"))
	f.Add([]byte("VmRSS:1\nVmHWM:"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := parseMemStatus(in)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, m.RSS, int64(0))
		require.GreaterOrEqual(t, m.HWM, int64(0))
		require.LessOrEqual(t, m.RSS, int64(1)<<50)
	})
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable() // any executable file will do
	require.NoError(t, err)
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"--abacusd", bin, "--loadgen", bin, "--duration", "5s", "--warmup", "1s", "--json-out", "x.json"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, cfg.Duration)
	require.Equal(t, time.Second, cfg.Warmup)
	require.Equal(t, 8, cfg.Tenants)
	require.Equal(t, "x.json", cfg.JSONOut)

	_, err = parseFlags([]string{"--abacusd", filepath.Join(t.TempDir(), "none"), "--loadgen", t.TempDir(), "--duration", "1s",
		"--warmup", "3s", "--tenants", "0", "--batch-size", "0", "--streams", "-1", "--in-flight", "0", "--zipf-s", "-1", "--bare-runs", "0", "--log-level", "x", "more"}, &stderr)
	for _, want := range []string{"--abacusd", "is not an executable file", "--duration is 1s", "--warmup is 3s", "--tenants is 0",
		"--batch-size is 0", "--streams is -1", "--in-flight is 0", "--zipf-s is -1", "--bare-runs is 0", `--log-level "x"`, "unexpected arguments: more"} {
		require.ErrorContains(t, err, want)
	}
}

func report(accepted float64, p50, p99 time.Duration) *loadgen.Report {
	return &loadgen.Report{
		AcceptedPerSecond: accepted,
		Latency:           loadgen.Latency{Count: 100, P50: p50, P99: p99},
		StreamErrors:      map[string]int64{"Unavailable": 2},
		Measured:          loadgen.Counts{Rejected: 12, Unanswered: 3},
	}
}

func TestResult_TargetsAndTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		res        Result
		met        map[string]bool // of the measured targets
		unmeasured bool            // some targets could not be measured
		inTable    []string
	}{
		{
			name: "all met",
			res: Result{
				Bare: report(800_000, time.Millisecond, 4*time.Millisecond), Max: report(600_000, 5*time.Millisecond, 30*time.Millisecond),
				Half: report(300_000, time.Millisecond, 12*time.Millisecond), HalfRate: 300_000, RSS: RSS{HWM: 200 << 20, PeakMax: 190 << 20, PeakHalf: 150 << 20},
			},
			met:     map[string]bool{targetNameRate: true, targetNameShare: true, targetNameP99: true, targetNameRSS: true},
			inTable: []string{"600,000", "0.75", "1.0 / 12.0 ms", "200 MiB", "190 MiB, 150 MiB", "12 / 3 / 2"},
		},
		{
			name: "none met",
			res: Result{
				Bare: report(400_000, time.Millisecond, 4*time.Millisecond), Max: report(100_000, 50*time.Millisecond, 300*time.Millisecond),
				Half: report(50_000, 10*time.Millisecond, 80*time.Millisecond), HalfRate: 50_000, RSS: RSS{HWM: 600 << 20},
			},
			met:     map[string]bool{targetNameRate: false, targetNameShare: false, targetNameP99: false, targetNameRSS: false},
			inTable: []string{"NOT MET", "0.25", "600 MiB"},
		},
		{
			name:       "stopped after the bare phase",
			res:        Result{Bare: report(400_000, time.Millisecond, 4*time.Millisecond)},
			met:        map[string]bool{},
			unmeasured: true,
			inTable:    []string{"400,000", "not run", "not measured"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := tt.res
			res.Settings = Settings{PhaseDuration: 13 * time.Second, Warmup: 3 * time.Second, Tenants: 8, BatchSize: 500, InFlight: 8}
			res.Evaluate()
			require.Len(t, res.Targets, 4, "every target is listed, measured or not")
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
			if !tt.unmeasured && tt.met[targetNameShare] {
				require.NotContains(t, out.String(), "NOT MET")
			}
			b, err := json.Marshal(&res)
			require.NoError(t, err)
			require.Contains(t, string(b), `"targets"`)
		})
	}
}

func TestResult_BestBareRunCounts(t *testing.T) {
	t.Parallel()
	var res Result
	first, second := report(300_000, time.Millisecond, 2*time.Millisecond), report(450_000, time.Millisecond, 2*time.Millisecond)
	res.addBare(first)
	res.addBare(second)
	res.addBare(report(100_000, time.Millisecond, 2*time.Millisecond))
	require.Same(t, second, res.Bare)
	require.Len(t, res.BareRuns, 3)
	res.Max = report(225_000, time.Millisecond, 2*time.Millisecond)
	res.Evaluate()
	require.InDelta(t, 0.5, res.target(targetNameShare).Value, 1e-9)
	var out strings.Builder
	require.NoError(t, res.WriteTable(&out))
	require.Contains(t, out.String(), "300,000, 450,000, 100,000")
}
