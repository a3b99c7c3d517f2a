package devstacktest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

var tenants = []string{"acme", "globex", "initech", "umbrella"}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(t.Context())) })
	return conn
}

func databaseOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

func TestPostgres_GivesEachTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	used := map[string]string{} // database -> tenant

	t.Run("group", func(t *testing.T) {
		for _, tenant := range tenants {
			t.Run(tenant, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dbURL := devstacktest.Postgres(t)
				db := databaseOf(t, dbURL)
				mu.Lock()
				used[db] = tenant
				mu.Unlock()

				conn := connect(t, dbURL)
				var tables int
				require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables))
				require.Zero(t, tables, "a fresh database is empty")
				// Same table name in every test: no clash.
				_, err := conn.Exec(ctx, "CREATE TABLE marker (tenant text)")
				require.NoError(t, err)
				_, err = conn.Exec(ctx, "INSERT INTO marker VALUES ($1)", tenant)
				require.NoError(t, err)
				var got []string
				rows, err := conn.Query(ctx, "SELECT tenant FROM marker")
				require.NoError(t, err)
				got, err = pgx.CollectRows(rows, pgx.RowTo[string])
				require.NoError(t, err)
				require.Equal(t, []string{tenant}, got)
			})
		}
	})

	require.Len(t, used, len(tenants), "every test got a different database")
	admin := connect(t, devstacktest.PostgresServer(t).URL("postgres"))
	for db := range used {
		var exists bool
		require.NoError(t, admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists))
		require.False(t, exists, "database %s is dropped when its test ends", db)
	}
}

func TestRedis_GivesEachTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	used := map[string]bool{}

	t.Run("group", func(t *testing.T) {
		for _, tenant := range tenants {
			t.Run(tenant, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				// Indexes are reused once flushed, so only databases held at
				// the same time are sure to differ.
				mine, other := devstacktest.Redis(t), devstacktest.Redis(t)
				require.NotEqual(t, mine, other)
				mu.Lock()
				used[mine], used[other] = true, true
				mu.Unlock()

				c := redisClient(t, mine)
				n, err := c.DBSize(ctx).Result()
				require.NoError(t, err)
				require.Zero(t, n, "a fresh database is empty, even if an earlier test used its index")
				require.NoError(t, c.Set(ctx, "tenant", tenant, 0).Err())
				require.NoError(t, redisClient(t, other).Set(ctx, "tenant", "other", 0).Err())
				got, err := c.Get(ctx, "tenant").Result()
				require.NoError(t, err)
				require.Equal(t, tenant, got)
			})
		}
	})

	for redisURL := range used {
		n, err := redisClient(t, redisURL).DBSize(t.Context()).Result()
		require.NoError(t, err)
		require.Zero(t, n, "%s is flushed when its test ends", redisURL)
	}
}

func redisClient(t *testing.T, redisURL string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestKafka_ProduceConsume(t *testing.T) {
	t.Parallel()
	const topic = "events"
	k := devstacktest.Kafka(t, kfake.SeedTopics(1, topic))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(k.Brokers()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	for i := range 3 {
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}).FirstErr())
	}
	var got []string
	for len(got) < 3 {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "got %v", got)
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	require.Equal(t, []string{"0", "1", "2"}, got)
}

// TestPostgresServer_Restart restarts the shared server, so it is not
// parallel: Go runs it before any parallel test resumes.
func TestPostgresServer_Restart(t *testing.T) {
	ctx := t.Context()
	dbURL := devstacktest.Postgres(t)
	_, err := connect(t, dbURL).Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)

	srv := devstacktest.PostgresServer(t)
	port := srv.Port()
	require.NoError(t, srv.Restart(ctx))
	require.Equal(t, port, srv.Port())

	var v int
	require.NoError(t, connect(t, dbURL).QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v)
}
