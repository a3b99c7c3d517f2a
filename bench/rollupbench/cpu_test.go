package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr string
	}{
		{
			name: "postgres backend",
			in:   "4242 (postgres) S 4200 4200 4200 0 -1 4194560 5000 0 0 0 150 25 3 4 20 0 1 0 131172 3133440 392 18446744073709551615",
			want: procStat{ppid: 4200, cpu: 175 * clockTick, cpuChildren: 7 * clockTick},
		},
		{
			name: "command with spaces and parentheses",
			in:   "7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0",
			want: procStat{ppid: 1, cpu: 3 * clockTick, cpuChildren: 7 * clockTick},
		},
		{name: "no command", in: "7 a R 1", wantErr: "no command name"},
		{name: "too short", in: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 1 2", wantErr: "fields after the command name"},
		{name: "not a number", in: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 2 3 4", wantErr: "field 14"},
		{name: "negative", in: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 -4", wantErr: "field 17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseProcStat([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestReadProcStat_Self(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	st, err := readProcStat("self")
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.ppid)
	require.GreaterOrEqual(t, st.cpu, time.Duration(0))
}

func TestPostmasterPID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("4200\n/data\n1700000000\n5432\n"), 0o600))
	pid, err := postmasterPID(dir)
	require.NoError(t, err)
	require.Equal(t, 4200, pid)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("x\n"), 0o600))
	_, err = postmasterPID(dir)
	require.ErrorContains(t, err, "want a PID")
	_, err = postmasterPID(t.TempDir())
	require.Error(t, err)
}

func TestCPUUse(t *testing.T) {
	t.Parallel()
	later := cpuUse{Abacusd: 5 * time.Second, Postgres: 9 * time.Second, Bench: 2 * time.Second, Machine: 30 * time.Second}
	earlier := cpuUse{Abacusd: time.Second, Postgres: 4 * time.Second, Bench: time.Second, Machine: 10 * time.Second}
	used := later.sub(earlier)
	require.Equal(t, cpuUse{Abacusd: 4 * time.Second, Postgres: 5 * time.Second, Bench: time.Second, Machine: 20 * time.Second}, used)
	require.Equal(t, 10*time.Second, used.others())
	require.Equal(t, time.Duration(0), cpuUse{Postgres: 2 * time.Second, Machine: time.Second}.others(), "sampling skew never makes it negative")
}

func TestParseMachineStat(t *testing.T) {
	t.Parallel()
	busy, err := parseMachineStat([]byte("cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 50 2 25 500 10 1 1 5 0 0\n"))
	require.NoError(t, err)
	require.Equal(t, 170*clockTick, busy, "user, nice, system, irq, softirq and steal; not idle or iowait")
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 x 4 5 6 7 8"} {
		_, err := parseMachineStat([]byte(bad))
		require.Error(t, err, bad)
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		busy, err := parseMachineStat(b)
		require.NoError(t, err)
		require.Positive(t, busy)
	}
}
