package ratelimit

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

// redisClient returns a client of a Redis database of the test's own.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(devstacktest.Redis(t))
	require.NoError(t, err)
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// refusingClient returns a client of an address where nothing listens:
// every call fails at once with "connection refused".
func refusingClient(t *testing.T) *redis.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// silentClient returns a client of a server that accepts connections and
// never answers, with go-redis's default options (context deadlines are not
// applied to socket reads).
func silentClient(t *testing.T) *redis.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: lis.Addr().String(), ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() {
		_ = c.Close()
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return c
}

// countingHook counts the commands a client sends (a script run counts as
// one, even when go-redis retries EVALSHA with EVAL).
type countingHook struct {
	mu    sync.Mutex
	calls int
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "get" || name == "ping" || name == "eval_ro" || name == "evalsha_ro" {
			h.mu.Lock()
			h.calls++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *countingHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 5, 17, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logRecorder keeps the messages logged at each level.
type logRecorder struct {
	mu   sync.Mutex
	msgs map[slog.Level][]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs == nil {
		r.msgs = map[slog.Level][]string{}
	}
	r.msgs[rec.Level] = append(r.msgs[rec.Level], rec.Message)
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(level slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs[level])
}

// metricValue returns the value of the counter or gauge name with the given
// label values (in any order: name=value pairs), 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, want) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return len(got) == len(want)
}

// testRedisTimeout replaces the default RedisTimeout in tests that expect
// Redis to decide: the race detector and parallel tests make the first call
// (dial, script load) slower than the production default.
const testRedisTimeout = 5 * time.Second

// newTestLimiter returns a Limiter on rdb with its registry and log.
func newTestLimiter(t *testing.T, rdb redis.UniversalClient, cfg Config) (*Limiter, *prometheus.Registry, *logRecorder) {
	t.Helper()
	if cfg.RedisTimeout == 0 {
		cfg.RedisTimeout = testRedisTimeout
	}
	reg := prometheus.NewRegistry()
	logs := &logRecorder{}
	l, err := New(rdb, cfg, slog.New(logs), reg)
	require.NoError(t, err)
	return l, reg, logs
}

// newTestQuota returns a Quota on rdb with its registry and log.
func newTestQuota(t *testing.T, rdb redis.UniversalClient, cfg QuotaConfig) (*Quota, *prometheus.Registry, *logRecorder) {
	t.Helper()
	if cfg.RedisTimeout == 0 {
		cfg.RedisTimeout = testRedisTimeout
	}
	reg := prometheus.NewRegistry()
	logs := &logRecorder{}
	q, err := NewQuota(rdb, cfg, slog.New(logs), reg)
	require.NoError(t, err)
	return q, reg, logs
}

// tenantID converts a test's tenant name.
func tenantID(s string) tenancy.ID { return tenancy.ID(s) }
