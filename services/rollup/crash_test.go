package rollup_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
)

// raceEnabled is set when the tests run under the race detector; the crash
// consumer is then built with it too.
var raceEnabled bool

// Must match internal/crashconsumer.
const (
	crashAfterEnv = "ABACUS_ROLLUP_CRASH_AFTER_BATCH"
	crashMarker   = "CRASH-POINT"
)

// TestConsumer_ExactlyOnceAcrossProcessKills is the crash proof. Events of
// 20 tenants, with 5 % of them sent again as client retries would, stream
// into the event log while the consumer runs as a separate process that is
// killed over and over: with SIGKILL at random moments (in a transaction,
// in a rebalance, while loading offsets), and by itself right after a
// database commit and before the matching Kafka commit. After the last
// restart every (tenant, type, minute) rollup equals the number of distinct
// events produced for it and the dedup table holds exactly those events.
func TestConsumer_ExactlyOnceAcrossProcessKills(t *testing.T) {
	t.Parallel()
	events, minKills, produceFor := 50_000, 12, 10*time.Second
	if *long {
		events, minKills, produceFor = 200_000, 30, 40*time.Second
	}
	env := rolluptest.NewEnv(t, 8)
	bin := buildCrashConsumer(t)
	const group = "crash"
	work := rolluptest.NewWorkload(11, 20, events, 50, 15)
	batches := mixIn(work.Batches, work.Retries(0.05))

	producer := env.RecordProducer(t)
	produced := make(chan error, 1)
	pause := produceFor * 4 / time.Duration(len(batches))
	began := time.Now()
	go func() {
		produced <- rolluptest.ProduceAll(t.Context(), producer, batches, 4, func() { time.Sleep(pause) })
	}()

	adm := kadm.NewClient(env.AdminClient(t))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var (
		randomKills, selfKills int
		productionDone         bool
		rounds                 []string
	)
	counted := func() int64 {
		var n int64
		require.NoError(t, env.DB.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+env.DedupTable()).Scan(&n))
		return n
	}
	for round := 0; !productionDone || randomKills+selfKills < minKills; round++ {
		select {
		case err := <-produced:
			require.NoError(t, err)
			productionDone = true
			t.Logf("all %d batches produced after %s", len(batches), time.Since(began).Round(time.Millisecond))
		default:
		}
		if round%2 == 0 {
			// Let it commit a few batches and kill itself between the
			// database commit and the Kafka commit.
			after := 1 + rng.IntN(4)
			p := startCrashConsumer(t, bin, env, group, round, after)
			if p.waitSelfKill(t, 20*time.Second) {
				selfKills++
				requireDatabaseAheadOfKafka(t, env, adm, group)
				rounds = append(rounds, fmt.Sprintf("self-kill after batch %d: %d counted", after, counted()))
				continue
			}
			// Nothing left to commit that many batches of: a random kill.
			randomKills++
			rounds = append(rounds, fmt.Sprintf("no batch %d within 20s, killed: %d counted", after, counted()))
			continue
		}
		p := startCrashConsumer(t, bin, env, group, round, 0)
		if round%3 == 1 {
			// Anywhere in its life: starting, joining, loading and
			// claiming offsets, applying.
			after := time.Duration(rng.IntN(2500)) * time.Millisecond
			p.kill(t, after)
			rounds = append(rounds, fmt.Sprintf("killed %s after start: %d counted", after, counted()))
		} else {
			// While it works through the backlog, most likely inside a
			// transaction.
			working := p.waitWorking(t)
			after := time.Duration(rng.IntN(1200)) * time.Millisecond
			p.kill(t, after)
			rounds = append(rounds, fmt.Sprintf("killed %s after it started applying (%s after start): %d counted",
				after, working.Round(time.Millisecond), counted()))
		}
		randomKills++
	}
	t.Logf("rounds:\n\t%s", strings.Join(rounds, "\n\t"))
	t.Logf("%d kills (%d at random moments, %d after a database commit and before its Kafka commit) after %s",
		randomKills+selfKills, randomKills, selfKills, time.Since(began).Round(time.Millisecond))
	require.GreaterOrEqual(t, selfKills, minKills/3, "enough kills between the two commits")

	last := startCrashConsumer(t, bin, env, group, -1, 0)
	env.RequireBucketsWithin(t, work.Want(), work.Keys(), 3*time.Minute)
	last.stop(t)
	t.Logf("%d distinct events (%d produced with the retries) counted exactly once after %s",
		work.Distinct(), rolluptest.CountEvents(batches), time.Since(began).Round(time.Millisecond))
}

// mixIn spreads retries over the second half of batches, as late client
// retries arrive.
func mixIn(batches, retries []rolluptest.Batch) []rolluptest.Batch {
	half := len(batches) / 2
	out := slices.Clone(batches[:half])
	every := max(len(batches[half:])/max(len(retries), 1), 1)
	next := 0
	for i, b := range batches[half:] {
		out = append(out, b)
		if (i+1)%every == 0 && next < len(retries) {
			out = append(out, retries[next])
			next++
		}
	}
	return append(out, retries[next:]...)
}

// requireDatabaseAheadOfKafka checks that the process died between the two
// commits: some partition's offset in the database is beyond the group's
// Kafka commit. The next process must start from the database, or it would
// count that batch again.
func requireDatabaseAheadOfKafka(t *testing.T, env *rolluptest.Env, adm *kadm.Client, group string) {
	t.Helper()
	stored := env.StoredOffsets(t, group)
	committed, err := adm.FetchOffsets(t.Context(), group)
	require.NoError(t, err)
	ahead := 0
	for p, next := range stored {
		kafka := int64(-1)
		if r, ok := committed.Lookup(eventlog.Topic, p); ok && r.Err == nil {
			kafka = r.At
		}
		if next > 0 && next > kafka {
			ahead++
		}
	}
	require.Positive(t, ahead, "a partition's database offset is beyond its Kafka commit: %v vs %v", stored, committed)
}

// buildCrashConsumer builds internal/crashconsumer, with the race detector
// when the tests have it.
func buildCrashConsumer(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command builds the crash consumer")
	bin := filepath.Join(t.TempDir(), "crashconsumer")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./internal/crashconsumer")
	out, err := exec.CommandContext(t.Context(), goTool, args...).CombinedOutput()
	require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
	return bin
}

// crashProcess is one run of the crash consumer.
type crashProcess struct {
	cmd     *exec.Cmd
	log     string
	started time.Time
	exited  chan struct{}
}

// startCrashConsumer starts the crash consumer; crashAfter > 0 makes it
// kill itself after that many batches. Its log goes to a file that is
// shown if the test fails.
func startCrashConsumer(t *testing.T, bin string, env *rolluptest.Env, group string, round, crashAfter int) *crashProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("round-%d.log", round))
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin,
		"-database-url", env.DatabaseURL,
		"-brokers", strings.Join(env.Kafka.Brokers(), ","),
		"-group", group,
		"-max-poll-records", "10",
		"-session-timeout", "1s",
		"-rebalance-timeout", "5s",
		"-retry-backoff", "50ms",
	)
	cmd.Env = os.Environ()
	if crashAfter > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", crashAfterEnv, crashAfter))
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	p := &crashProcess{cmd: cmd, log: logPath, started: time.Now(), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("crash consumer round %d log (tail):\n%s", round, tail(b, 4000))
			}
		}
	})
	return p
}

// waitSelfKill waits up to d for the process to kill itself at its crash
// point and reports whether it did; otherwise it kills it.
func (p *crashProcess) waitSelfKill(t *testing.T, d time.Duration) bool {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		p.kill(t, 0)
		return false
	}
	b, err := os.ReadFile(p.log)
	require.NoError(t, err)
	require.Equal(t, -1, p.cmd.ProcessState.ExitCode(), "the process exits only by a signal: %s\n%s", p.cmd.ProcessState, tail(b, 4000))
	require.Contains(t, string(b), crashMarker)
	return true
}

// waitWorking waits until the process has claimed its partitions (it logs
// that just before fetching) and returns how long that took since it was
// started.
func (p *crashProcess) waitWorking(t *testing.T) time.Duration {
	t.Helper()
	deadline := time.Now().Add(rolluptest.Wait)
	for {
		b, err := os.ReadFile(p.log)
		require.NoError(t, err)
		if bytes.Contains(b, []byte("rollup partitions claimed")) {
			return time.Since(p.started)
		}
		require.True(t, time.Now().Before(deadline), "the crash consumer never claimed partitions:\n%s", tail(b, 4000))
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL after d, unless the process exited before.
func (p *crashProcess) kill(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
		b, _ := os.ReadFile(p.log)
		require.FailNow(t, "the crash consumer exited by itself", "%s\n%s", p.cmd.ProcessState, tail(b, 4000))
	case <-time.After(d):
	}
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
}

// stop interrupts the process and requires a clean exit.
func (p *crashProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	select {
	case <-p.exited:
	case <-time.After(rolluptest.Wait):
		require.FailNow(t, "the crash consumer did not stop on SIGINT")
	}
	b, _ := os.ReadFile(p.log)
	require.Zero(t, p.cmd.ProcessState.ExitCode(), "clean shutdown:\n%s", tail(b, 4000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b
}
