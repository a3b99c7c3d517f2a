package harness

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPrefixWriter(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := &prefixWriter{w: &out, prefix: "[max] "}
	_, _ = p.Write([]byte("one\ntw"))
	_, _ = p.Write([]byte("o\nthree"))
	p.flush()
	require.Equal(t, "[max] one\n[max] two\n[max] three\n", out.String())
}

func TestGroupInt(t *testing.T) {
	t.Parallel()
	require.Equal(t, "1,234,567", GroupInt(1234567))
	require.Equal(t, "-12,345", GroupInt(-12345))
	require.Equal(t, "0", GroupInt(0))
}

func TestTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target Target
		want   string
	}{
		{name: "met", target: Target{Goal: "≥ 1", Measured: true, Met: true}, want: "met"},
		{name: "not met", target: Target{Goal: "≥ 1", Measured: true}, want: "NOT MET"},
		{name: "not measured", target: Target{Goal: "≥ 1", Met: true}, want: "not measured"},
		{name: "note", target: Target{Goal: "≥ 1", Measured: true, Met: true, Note: "not counted: too few"}, want: "not counted: too few"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.target.Verdict())
			tab := NewTable()
			tab.Row("plain figure", "12")
			tab.TargetRow("figure with a target", "34", tt.target)
			var out strings.Builder
			_, err := tab.WriteTo(&out)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			require.Len(t, lines, 4)
			require.True(t, strings.HasPrefix(lines[0], "figure "))
			require.Equal(t, strings.Index(lines[0], "measured"), strings.Index(lines[3], "34"), "columns are aligned")
			require.True(t, strings.HasSuffix(lines[3], tt.want))
		})
	}
	require.Equal(t, "b", FindTarget([]Target{{Name: "a"}, {Name: "b", Goal: "x"}}, "b").Name)
	require.False(t, FindTarget(nil, "c").Measured)
}

func TestCountLogWarnings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, []byte(`{"level":"INFO","msg":"a"}
{"level":"WARN","msg":"b"}
{"level":"ERROR","msg":"c"}
`), 0o600))
	require.Equal(t, 2, CountLogWarnings(path))
	require.Equal(t, 0, CountLogWarnings(filepath.Join(t.TempDir(), "missing")))
}

func TestTailFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, []byte("0123456789"), 0o600))
	require.Equal(t, "789", TailFile(path, 3))
	require.Equal(t, "0123456789", TailFile(path, 100))
	require.Empty(t, TailFile(filepath.Join(t.TempDir(), "missing"), 3))
}

func TestLoadgenRunArgs(t *testing.T) {
	t.Parallel()
	args := LoadgenRun{
		Target: "127.0.0.1:1", KeysFile: "keys", RunID: "abc", Duration: 13 * time.Second, Warmup: 3 * time.Second,
		BatchSize: 500, InFlight: 8, ZipfS: 1.1, Rate: 50000.4,
	}.args()
	joined := strings.Join(args, " ")
	for _, want := range []string{"--target 127.0.0.1:1", "--duration 13s", "--warmup 3s", "--zipf-s 1.1", "--rate 50000", "--streams 0", "--json"} {
		require.Contains(t, joined, want)
	}
}
