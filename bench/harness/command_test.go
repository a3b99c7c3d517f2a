package harness

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testConfig is a benchmark's configuration with one flag of its own.
type testConfig struct {
	Flags
	Rounds int
}

func parseTestFlags(args []string, stderr io.Writer) (testConfig, error) {
	var c testConfig
	var err error
	c.Flags, err = ParseFlags("testbench", args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&c.Rounds, "rounds", 1, "rounds")
	}, func() error {
		if c.Rounds < 1 {
			return errors.New("--rounds must be positive")
		}
		return nil
	})
	return c, err
}

// testResult is a benchmark's result.
type testResult struct {
	Rounds    int  `json:"rounds"`
	Evaluated bool `json:"evaluated"`
}

func (r *testResult) Evaluate() { r.Evaluated = true }

func (r *testResult) WriteTable(w io.Writer) error {
	t := NewTable()
	t.Row("rounds", GroupInt(int64(r.Rounds)))
	_, err := t.WriteTo(w)
	return err
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable() // any executable file will do
	require.NoError(t, err)
	var stderr strings.Builder
	cfg, err := parseTestFlags([]string{"--abacusd", bin, "--loadgen", bin, "--rounds", "3", "--log-level", "debug", "--json-out", "x.json"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Rounds)
	require.Equal(t, slog.LevelDebug, cfg.LogLevel)
	require.Equal(t, "x.json", cfg.JSONOut)
	require.True(t, filepath.IsAbs(cfg.Abacusd))

	_, err = parseTestFlags([]string{"--abacusd", filepath.Join(t.TempDir(), "none"), "--loadgen", t.TempDir(),
		"--rounds", "0", "--log-level", "x", "more"}, &stderr)
	for _, want := range []string{"--abacusd", "no such file", "--loadgen", "is not an executable file",
		"--rounds must be positive", `--log-level "x"`, "unexpected arguments: more"} {
		require.ErrorContains(t, err, want)
	}
	_, err = parseTestFlags([]string{"--abacusd", ""}, &stderr)
	require.ErrorContains(t, err, "--abacusd is required")
}

func TestRun(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable()
	require.NoError(t, err)
	jsonOut := filepath.Join(t.TempDir(), "out.json")
	args := []string{"--abacusd", bin, "--loadgen", bin, "--rounds", "1234", "--json-out", jsonOut}
	tests := []struct {
		name     string
		args     []string
		benchErr error
		noResult bool
		code     int
		stdout   string
		stderr   string
	}{
		{name: "ok", args: args, code: 0, stdout: "1,234"},
		{name: "failed part way", args: args, benchErr: errors.New("phase two broke"), code: 1, stdout: "1,234", stderr: "testbench: phase two broke"},
		{name: "failed at once", args: args, benchErr: errors.New("no stack"), noResult: true, code: 1, stderr: "testbench: no stack"},
		{name: "bad command line", args: []string{"--rounds", "x"}, code: 2, stderr: "testbench: invalid command line"},
		{name: "help", args: []string{"-h"}, code: 0, stderr: "-rounds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Run(t.Context(), "testbench", tt.args, &stdout, &stderr, parseTestFlags,
				func(_ context.Context, cfg testConfig, _ *slog.Logger, _ io.Writer) (*testResult, error) {
					if tt.noResult {
						return nil, tt.benchErr
					}
					return &testResult{Rounds: cfg.Rounds}, tt.benchErr
				})
			require.Equal(t, tt.code, code)
			require.Contains(t, stdout.String(), tt.stdout)
			require.Contains(t, stderr.String(), tt.stderr)
			if tt.code == 0 && tt.stdout != "" {
				b, err := os.ReadFile(jsonOut)
				require.NoError(t, err)
				var got testResult
				require.NoError(t, json.Unmarshal(b, &got))
				require.Equal(t, testResult{Rounds: 1234, Evaluated: true}, got)
			}
		})
	}
}
