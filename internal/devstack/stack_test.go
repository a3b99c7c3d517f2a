package devstack_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

const stackTopic = "abacus.events.v1"

// stackAddrs is what a stack's first run reports, to compare with the next.
type stackAddrs struct {
	DatabaseURL  string
	RedisURL     string
	KafkaBrokers []string
}

func addrsOf(s *devstack.Stack) stackAddrs {
	return stackAddrs{DatabaseURL: s.DatabaseURL, RedisURL: s.RedisURL, KafkaBrokers: s.KafkaBrokers}
}

// writeStackData leaves one row, one key and one record in a running stack.
func writeStackData(t *testing.T, s *devstack.Stack) {
	t.Helper()
	ctx := t.Context()
	_, err := connectPG(t, s.DatabaseURL).Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('pg')")
	require.NoError(t, err)

	opts, err := redis.ParseURL(s.RedisURL)
	require.NoError(t, err)
	rc := redis.NewClient(opts)
	defer rc.Close()
	require.NoError(t, rc.Set(ctx, "kept", "redis", 0).Err())

	cl := newKafkaClient(t, s.KafkaBrokers)
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, stackTopic)
	require.NoError(t, err)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: stackTopic, Value: []byte("kafka")}).FirstErr())
	cl.Close()
}

// requireStackData checks what writeStackData left.
func requireStackData(t *testing.T, s *devstack.Stack) {
	t.Helper()
	ctx := t.Context()
	var v string
	require.NoError(t, connectPG(t, s.DatabaseURL).QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, "pg", v)

	opts, err := redis.ParseURL(s.RedisURL)
	require.NoError(t, err)
	rc := redis.NewClient(opts)
	defer rc.Close()
	v, err = rc.Get(ctx, "kept").Result()
	require.NoError(t, err)
	require.Equal(t, "redis", v)

	recs := consumeN(t, s.KafkaBrokers, stackTopic, 1)
	require.Equal(t, "kafka", string(recs[0].Value))
}

func TestStart_SecondRunReusesDataAndPorts(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cfg := devstack.Config{DataDir: dataDir}

	s, err := devstack.Start(t.Context(), cfg, testLogger(t))
	require.NoError(t, err)
	require.NotNil(t, s.Postgres)
	require.NotNil(t, s.Redis)
	require.NotNil(t, s.Kafka)
	require.True(t, strings.HasSuffix(s.DatabaseURL, "/abacus?sslmode=disable"), s.DatabaseURL)
	first := addrsOf(s)
	writeStackData(t, s)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing twice is harmless")

	for _, sub := range []string{"postgres", "redis", "kafka"} {
		require.FileExists(t, dataDir+"/"+sub+"/port")
	}

	s, err = devstack.Start(t.Context(), cfg, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, first, addrsOf(s))
	requireStackData(t, s)
}

func TestStart_External(t *testing.T) {
	t.Parallel()
	cfg := devstack.Config{
		DataDir:      t.TempDir(),
		DatabaseURL:  "postgres://u:secret@db.example:5432/abacus",
		RedisURL:     "redis://cache.example:6379/0",
		KafkaBrokers: []string{"k1.example:9092"},
	}
	s, err := devstack.Start(t.Context(), cfg, testLogger(t))
	require.NoError(t, err)
	require.Equal(t, stackAddrs{cfg.DatabaseURL, cfg.RedisURL, cfg.KafkaBrokers}, addrsOf(s))
	require.Nil(t, s.Postgres)
	require.Nil(t, s.Redis)
	require.Nil(t, s.Kafka)
	require.NoError(t, s.Close())
}

// TestStart_AfterParentKilled runs a stack in a child process, SIGKILLs that
// process the way a crashed or killed `abacusd dev` dies, and starts the
// stack again on the same data directory: the servers the dead process left
// behind must not get in the way, and ports and data must be kept.
func TestStart_AfterParentKilled(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperStackProcess$")
	cmd.Env = append(os.Environ(), "DEVSTACK_HELPER_DATA_DIR="+dataDir)
	cmd.Stderr = t.Output()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	// Never written or closed before the kill: the helper waits on it.
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// The helper prints its stack's addresses as one JSON line once its data
	// is written, then waits to be killed.
	var first stackAddrs
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "helper process ended before reporting its stack")
	require.NoError(t, json.Unmarshal([]byte(line), &first), "helper said %q", line)

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	s, err := devstack.Start(t.Context(), devstack.Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, first, addrsOf(s))
	requireStackData(t, s)
}

// TestHelperStackProcess is the child process of TestStart_AfterParentKilled;
// it does nothing in a normal test run.
func TestHelperStackProcess(t *testing.T) {
	dataDir := os.Getenv("DEVSTACK_HELPER_DATA_DIR")
	if dataDir == "" {
		return
	}
	s, err := devstack.Start(t.Context(), devstack.Config{DataDir: dataDir}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	writeStackData(t, s)
	b, err := json.Marshal(addrsOf(s))
	require.NoError(t, err)
	fmt.Println(string(b))
	// Wait to be killed: the parent keeps stdin open until then.
	_, _ = io.Copy(io.Discard, os.Stdin)
}
