package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
)

const (
	// DefaultDataDir is where `abacusd dev` keeps its state unless told otherwise.
	DefaultDataDir = ".abacus"
	// DatabaseName is the database the stack creates and hands out.
	DatabaseName = "abacus"
)

// Config says which dependencies to start. Empty fields mean "start a
// private one".
type Config struct {
	// DataDir holds the private servers' state, in subdirectories
	// postgres/, redis/ and kafka/. Default ./.abacus.
	DataDir string
	// DatabaseURL, if set, is used instead of a private PostgreSQL.
	DatabaseURL string
	// RedisURL, if set, is used instead of a private Redis.
	RedisURL string
	// KafkaBrokers, if set, are used instead of the in-process broker.
	KafkaBrokers []string
}

// Stack is everything `abacusd dev` needs: where to reach PostgreSQL, Redis
// and Kafka, and the private servers it started (nil when external).
type Stack struct {
	// DatabaseURL reaches the abacus database.
	DatabaseURL string
	// RedisURL reaches Redis logical database 0.
	RedisURL string
	// KafkaBrokers are the seed brokers.
	KafkaBrokers []string

	// Postgres is the private PostgreSQL, nil when DatabaseURL was given.
	Postgres *Postgres
	// Redis is the private Redis, nil when RedisURL was given.
	Redis *Redis
	// Kafka is the in-process broker, nil when KafkaBrokers were given.
	Kafka *Kafka
}

// Start starts what cfg does not provide: a durable private PostgreSQL with
// a database named abacus, a private Redis with an append-only file, and an
// in-process broker persisted in the data directory. A second Start on the
// same data directory reuses the same data and, if still free, the same
// ports. On error, Start stops what it started.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Stack, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("start dev stack: %w", err)
	}
	private := cfg.DatabaseURL == "" || cfg.RedisURL == "" || len(cfg.KafkaBrokers) == 0
	if private {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("start dev stack: %w", err)
		}
	}

	s := &Stack{}
	fail := func(err error) (*Stack, error) {
		return nil, errors.Join(fmt.Errorf("start dev stack: %w", err), s.Close())
	}

	if cfg.DatabaseURL != "" {
		s.DatabaseURL = cfg.DatabaseURL
		logger.Info("using external PostgreSQL", "url", redactURL(cfg.DatabaseURL))
	} else {
		pg, err := StartPostgres(ctx, filepath.Join(dataDir, "postgres"), logger)
		if err != nil {
			return fail(err)
		}
		s.Postgres = pg
		if err := pg.CreateDatabase(ctx, DatabaseName); err != nil {
			return fail(err)
		}
		s.DatabaseURL = pg.URL(DatabaseName)
	}

	if cfg.RedisURL != "" {
		s.RedisURL = cfg.RedisURL
		logger.Info("using external Redis", "url", redactURL(cfg.RedisURL))
	} else {
		r, err := StartRedis(ctx, filepath.Join(dataDir, "redis"), logger)
		if err != nil {
			return fail(err)
		}
		s.Redis = r
		s.RedisURL = r.URL()
	}

	if len(cfg.KafkaBrokers) > 0 {
		s.KafkaBrokers = append([]string(nil), cfg.KafkaBrokers...)
		logger.Info("using external Kafka", "brokers", s.KafkaBrokers)
	} else {
		k, err := StartKafka(ctx, filepath.Join(dataDir, "kafka"), 0, logger)
		if err != nil {
			return fail(err)
		}
		s.Kafka = k
		s.KafkaBrokers = k.Brokers()
	}
	return s, nil
}

// Close stops the private servers in the reverse order of their start and
// returns every error. Closing twice is harmless.
func (s *Stack) Close() error {
	var errs []error
	if s.Kafka != nil {
		s.Kafka.Stop()
	}
	if s.Redis != nil {
		errs = append(errs, s.Redis.Stop())
	}
	if s.Postgres != nil {
		errs = append(errs, s.Postgres.Stop())
	}
	return errors.Join(errs...)
}

// redactURL hides a password in a URL for logging.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
