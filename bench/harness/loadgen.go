package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// LoadgenRun is one run of abacus-loadgen: the flags a benchmark sets.
type LoadgenRun struct {
	// Bin is the abacus-loadgen binary.
	Bin string
	// Phase names the run in progress lines ("[phase] ...").
	Phase string
	// Target is the gRPC address of the IngestService.
	Target string
	// KeysFile holds the tenants (see WriteKeys).
	KeysFile string
	// RunID is part of every event id (see loadgen.Config.RunID).
	RunID string
	// Duration and Warmup are loadgen.Config's.
	Duration, Warmup time.Duration
	// BatchSize, Streams (0: the load generator's default) and InFlight are loadgen.Config's.
	BatchSize, Streams, InFlight int
	// ZipfS is the skew of the tenant distribution.
	ZipfS float64
	// Rate is the target in events per second; 0 is as fast as the server answers.
	Rate float64
}

// args is the command line of the run, asking for a JSON report.
func (r LoadgenRun) args() []string {
	return []string{
		"--target", r.Target, "--keys-file", r.KeysFile, "--run-id", r.RunID,
		"--duration", r.Duration.String(), "--warmup", r.Warmup.String(),
		"--batch-size", strconv.Itoa(r.BatchSize), "--streams", strconv.Itoa(r.Streams),
		"--in-flight", strconv.Itoa(r.InFlight), "--zipf-s", strconv.FormatFloat(r.ZipfS, 'g', -1, 64),
		"--rate", strconv.FormatFloat(r.Rate, 'f', 0, 64), "--json", "--log-level", "warn",
	}
}

// RunLoadgen runs abacus-loadgen as r says and returns its report. Its progress lines go to
// stderr, prefixed with the phase.
func RunLoadgen(ctx context.Context, r LoadgenRun, stderr io.Writer) (*loadgen.Report, error) {
	cmd := exec.CommandContext(ctx, r.Bin, r.args()...)
	cmd.Env = ChildEnv(nil)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pw := &prefixWriter{w: stderr, prefix: "[" + r.Phase + "] "}
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

// WriteKeys writes keys to a new file at path, readable by this user only, in the format of
// abacus-loadgen's --keys-file.
func WriteKeys(path string, keys []loadgen.TenantKey) error {
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
