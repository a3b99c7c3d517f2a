// Package devstacktest gives every test package hermetic dependencies: one
// private PostgreSQL and one private Redis per test package, started on first
// use and stopped after the package's tests, with a fresh database and a
// Redis database index of its own for each test, and a fresh in-process
// Kafka-protocol broker per test. Nothing depends on servers that happen to
// be running on the machine.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { devstacktest.Main(m) }
//
// and in tests:
//
//	dbURL := devstacktest.Postgres(t)
//	redisURL := devstacktest.Redis(t)
//	brokers := devstacktest.Kafka(t).Brokers()
//
// If a dependency cannot start, the test fails with the reason; it is never
// skipped. Missing server binaries are installed by
// internal/devstack/install-deps.sh.
package devstacktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

const (
	// startTimeout bounds a server's first start.
	startTimeout = 2 * time.Minute
	// cleanupTimeout bounds dropping a database or flushing a Redis index.
	cleanupTimeout = 30 * time.Second
	// redisFirstDB..redisLastDB are handed out to tests; 0 stays free for
	// code under test that uses the default database.
	redisFirstDB, redisLastDB = 1, 9999
)

// pkg is the state of this test package's shared servers.
var pkg struct {
	mainRunning atomic.Bool
	dbSeq       atomic.Int64

	dirMu   sync.Mutex
	workDir string // os.MkdirTemp, removed by Main

	pg    lazyServer[*devstack.Postgres]
	redis lazyServer[*devstack.Redis]

	redisDBs indexPool
}

// lazyServer starts a server at most once, remembering a failure too, so
// that every later test fails with the same reason instead of retrying.
type lazyServer[S any] struct {
	mu      sync.Mutex
	started bool
	srv     S
	err     error
}

// get returns the server, starting it in its own subdirectory of the
// package's work directory on first use. Its log goes to stderr, warnings
// and errors only: it outlives the test that happened to start it.
func (l *lazyServer[S]) get(t testing.TB, name string, start func(context.Context, string, *slog.Logger) (S, error)) (S, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return l.srv, l.err
	}
	l.started = true
	dir, err := workDir()
	if err != nil {
		l.err = err
		return l.srv, l.err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	l.srv, l.err = start(ctx, filepath.Join(dir, name), logger)
	return l.srv, l.err
}

// stop stops the server if it was started successfully.
func (l *lazyServer[S]) stop(stop func(S) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started || l.err != nil {
		return nil
	}
	return stop(l.srv)
}

// Main runs the package's tests and then stops the shared PostgreSQL and
// Redis, if a test started them, and removes their files. Call it from
// TestMain; it does not return.
func Main(m *testing.M) {
	pkg.mainRunning.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "devstacktest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Postgres returns the URL of a new, empty database on the package's
// PostgreSQL, created for this test and dropped (with any sessions still
// open) when the test ends. It is safe to call from parallel tests.
func Postgres(t testing.TB) string {
	t.Helper()
	srv := PostgresServer(t)
	name := databaseName(t.Name(), pkg.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	if err := srv.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("devstacktest: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), cleanupTimeout)
		defer cancel()
		if err := dropDatabase(ctx, srv.URL("postgres"), name); err != nil {
			t.Errorf("devstacktest: drop database %s: %v", name, err)
		}
	})
	return srv.URL(name)
}

// PostgresServer returns the package's PostgreSQL server, starting it on
// first use. Tests that Stop, Kill or Restart it affect every test of the
// package, so they must not call t.Parallel (Go runs them before any
// parallel test resumes) and must leave it running (Restart) when they end.
func PostgresServer(t testing.TB) *devstack.Postgres {
	t.Helper()
	requireMain(t)
	srv, err := pkg.pg.get(t, "postgres", func(ctx context.Context, dir string, logger *slog.Logger) (*devstack.Postgres, error) {
		return devstack.StartPostgres(ctx, dir, logger, devstack.Ephemeral())
	})
	if err != nil {
		t.Fatalf("devstacktest: PostgreSQL unavailable: %v", err)
	}
	return srv
}

// Redis returns the URL of a Redis logical database of this test's own on
// the package's Redis, flushed when the test ends and then handed to a later
// test. It is safe to call from parallel tests.
func Redis(t testing.TB) string {
	t.Helper()
	srv := RedisServer(t)
	db, ok := pkg.redisDBs.take()
	if !ok {
		t.Fatalf("devstacktest: all Redis databases %d..%d are in use", redisFirstDB, redisLastDB)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), cleanupTimeout)
		defer cancel()
		if err := flushRedisDB(ctx, srv.Addr(), db); err != nil {
			// Not returned to the pool: it may still hold this test's keys.
			t.Errorf("devstacktest: flush Redis database %d: %v", db, err)
			return
		}
		pkg.redisDBs.put(db)
	})
	return fmt.Sprintf("redis://%s/%d", srv.Addr(), db)
}

// RedisServer returns the package's Redis server, starting it on first use.
// The same rules as for PostgresServer apply to tests that stop or restart
// it; note that its data does not survive a restart.
func RedisServer(t testing.TB) *devstack.Redis {
	t.Helper()
	requireMain(t)
	srv, err := pkg.redis.get(t, "redis", func(ctx context.Context, dir string, logger *slog.Logger) (*devstack.Redis, error) {
		return devstack.StartRedis(ctx, dir, logger, devstack.Ephemeral())
	})
	if err != nil {
		t.Fatalf("devstacktest: Redis unavailable: %v", err)
	}
	return srv
}

// Kafka starts a fresh, memory-only in-process Kafka-protocol broker for
// this test and closes it when the test ends. opts go to kfake, for example
// kfake.SeedTopics or kfake.AllowAutoTopicCreation; the cluster's
// fault-injection controls are on Kafka.Cluster(). It does not need Main.
func Kafka(t testing.TB, opts ...kfake.Opt) *devstack.Kafka {
	t.Helper()
	logger := testLogger(t)
	k, err := devstack.StartKafka(t.Context(), "", 0, logger, opts...)
	if err != nil {
		t.Fatalf("devstacktest: %v", err)
	}
	t.Cleanup(k.Stop)
	return k
}

func requireMain(t testing.TB) {
	t.Helper()
	if !pkg.mainRunning.Load() {
		t.Fatalf("devstacktest: add func TestMain(m *testing.M) { devstacktest.Main(m) } to this test package, so its servers are stopped and removed after the tests")
	}
}

// workDir returns the package's work directory, creating it on first use.
func workDir() (string, error) {
	pkg.dirMu.Lock()
	defer pkg.dirMu.Unlock()
	if pkg.workDir != "" {
		return pkg.workDir, nil
	}
	dir, err := os.MkdirTemp("", "abacus-devstacktest-")
	if err != nil {
		return "", err
	}
	// PostgreSQL may run as another OS user (when tests run as root); it
	// must be able to pass through.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", errors.Join(err, os.RemoveAll(dir))
	}
	pkg.workDir = dir
	return dir, nil
}

// shutdown stops the shared servers and removes their files.
func shutdown() error {
	errs := []error{
		pkg.redis.stop((*devstack.Redis).Stop),
		pkg.pg.stop((*devstack.Postgres).Stop),
	}
	pkg.dirMu.Lock()
	defer pkg.dirMu.Unlock()
	if pkg.workDir != "" {
		errs = append(errs, os.RemoveAll(pkg.workDir))
	}
	return errors.Join(errs...)
}

// databaseName makes a PostgreSQL identifier from the test name, readable in
// server logs, unique through seq, within the 63-byte limit.
func databaseName(testName string, seq int64) string {
	suffix := fmt.Sprintf("_%d", seq)
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 63-len(suffix) {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString(suffix)
	return b.String()
}

func dropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func flushRedisDB(ctx context.Context, addr string, db int) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer c.Close()
	return c.FlushDB(ctx).Err()
}

// indexPool hands out Redis database indexes, reusing returned ones.
type indexPool struct {
	mu   sync.Mutex
	next int
	free []int
}

func (p *indexPool) take() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		db := p.free[n-1]
		p.free = p.free[:n-1]
		return db, true
	}
	if p.next == 0 {
		p.next = redisFirstDB
	}
	if p.next > redisLastDB {
		return 0, false
	}
	p.next++
	return p.next - 1, true
}

func (p *indexPool) put(db int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, db)
}

// testLogger logs warnings and errors to the test's output until the test's
// cleanups have run; a broker may still log from its goroutines after that,
// when writing to the test's output would panic.
func testLogger(t testing.TB) *slog.Logger {
	w := &guardedWriter{w: t.Output()}
	t.Cleanup(w.close) // registered before the server's cleanup, so runs after it
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type guardedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *guardedWriter) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}
