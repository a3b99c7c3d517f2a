package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	"github.com/abacus-analytics/abacus/internal/devstack"
)

// migrateTimeout bounds `abacusd migrate`.
const migrateTimeout = 2 * time.Minute

// Stack is where one benchmark run happens: its work directory, and the private PostgreSQL,
// Redis and Kafka-protocol broker it starts there.
type Stack struct {
	*devstack.Stack
	// WorkDir holds the servers' data and the logs of the children.
	WorkDir string
	// PostgresDir is the directory of the PostgreSQL cluster (its data is in data/).
	PostgresDir string
	// AdminToken is the operator token abacusd is started with.
	AdminToken string

	removeWorkDir func()
}

// StartStack prepares a run of the benchmark named name: its work directory (flags.WorkDir, or
// a temporary one that Close removes), PostgreSQL and Redis there, ephemeral (durability traded
// for speed, as in tests), the broker in this process with kafkaOpts, and the database
// migrated by `abacusd migrate`. Close stops all of it.
func StartStack(ctx context.Context, flags Flags, name string, logger *slog.Logger, kafkaOpts ...kfake.Opt) (_ *Stack, err error) {
	dir, removeWorkDir, err := workDir(flags.WorkDir, "abacus-"+name+"-", logger)
	if err != nil {
		return nil, err
	}
	ds := &devstack.Stack{}
	s := &Stack{Stack: ds, WorkDir: dir, PostgresDir: filepath.Join(dir, "postgres"), removeWorkDir: removeWorkDir}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	logger.Info("starting the servers", "benchmark", name, "work_dir", dir)
	if ds.Postgres, err = devstack.StartPostgres(ctx, s.PostgresDir, logger, devstack.Ephemeral()); err != nil {
		return nil, err
	}
	if err := ds.Postgres.CreateDatabase(ctx, devstack.DatabaseName); err != nil {
		return nil, err
	}
	ds.DatabaseURL = ds.Postgres.URL(devstack.DatabaseName)
	if ds.Redis, err = devstack.StartRedis(ctx, filepath.Join(dir, "redis"), logger, devstack.Ephemeral()); err != nil {
		return nil, err
	}
	ds.RedisURL = ds.Redis.URL()
	if ds.Kafka, err = devstack.StartKafka(ctx, "", 0, logger, kafkaOpts...); err != nil {
		return nil, err
	}
	ds.KafkaBrokers = ds.Kafka.Brokers()
	token := make([]byte, 24)
	_, _ = rand.Read(token)
	s.AdminToken = hex.EncodeToString(token)
	logger.Info("applying migrations")
	if err := s.migrate(ctx, flags.Abacusd); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the servers and removes a temporary work directory.
func (s *Stack) Close() error {
	err := s.Stack.Close()
	s.removeWorkDir()
	return err
}

// Env is the environment of an abacusd on this stack: its dependencies, the admin token, JSON
// logs at level warn, no migrations at start (see Migrate), limit overrides reloaded every
// second, and default limits far above any benchmark's load, so that they never bind.
func (s *Stack) Env() []string {
	return ChildEnv(map[string]string{
		"ABACUS_DATABASE_URL":                      s.DatabaseURL,
		"ABACUS_REDIS_URL":                         s.RedisURL,
		"ABACUS_KAFKA_BROKERS":                     strings.Join(s.KafkaBrokers, ","),
		"ABACUS_ADMIN_TOKEN":                       s.AdminToken,
		"ABACUS_LOG_LEVEL":                         "warn",
		"ABACUS_LOG_FORMAT":                        "json",
		"ABACUS_AUTO_MIGRATE":                      "false",
		"ABACUS_LIMITS_REFRESH":                    "1s",
		"ABACUS_DEFAULT_EVENTS_PER_SECOND":         strconv.Itoa(loadgen.MaxTenantRate),
		"ABACUS_DEFAULT_EVENTS_BURST":              "100000000",
		"ABACUS_DEFAULT_REQUESTS_PER_SECOND":       "1000000",
		"ABACUS_DEFAULT_QUERY_REQUESTS_PER_SECOND": "1000000",
	})
}

// migrate runs `abacusd migrate` on the stack's database, logging to abacusd-migrate.log.
func (s *Stack) migrate(ctx context.Context, abacusd string) error {
	logPath := filepath.Join(s.WorkDir, "abacusd-migrate.log")
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := RunToEnd(ctx, abacusd, []string{"migrate"}, s.Env(), logPath); err != nil {
		return fmt.Errorf("abacusd migrate: %w\n%s", err, TailFile(logPath, logTailBytes))
	}
	return nil
}
