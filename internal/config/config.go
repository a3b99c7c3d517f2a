// Package config reads abacusd's configuration from command-line flags and their ABACUS_*
// environment equivalents. A flag given on the command line wins over the environment; the
// environment wins over the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/tenancy"
)

// Role is one part of abacusd that can be switched on or off per process.
type Role string

// The roles abacusd can run. Every role is stateless apart from Kafka, PostgreSQL and Redis, so
// any of them scales out by running more processes.
const (
	RoleIngest Role = "ingest"
	RoleQuery  Role = "query"
	RoleAdmin  Role = "admin"
	RoleRollup Role = "rollup"
)

// AllRoles lists every role in a stable order.
var AllRoles = []Role{RoleIngest, RoleQuery, RoleAdmin, RoleRollup}

// MinAdminTokenLen is the shortest admin token accepted: the token is the only credential for
// AdminService, so it must not be guessable.
const MinAdminTokenLen = 16

// Config is the whole configuration of an abacusd process.
type Config struct {
	GRPCAddr         string
	HTTPAddr         string
	DatabaseURL      string
	RedisURL         string
	KafkaBrokers     []string
	KafkaPartitions  int
	KafkaReplication int
	AdminToken       string
	DataDir          string
	Roles            []Role
	LogLevel         slog.Level
	LogFormat        string
	AutoMigrate      bool
	ShutdownTimeout  time.Duration
	AuthCacheTTL     time.Duration
	MaxRequestBytes  int64
	ProduceTimeout   time.Duration
	DatabaseMaxConns int
	StatementTimeout time.Duration
	// Limits are the limits of every tenant without overrides (ABACUS_DEFAULT_* and the event
	// size and time window variables); operators override them per tenant with UpdateTenant.
	Limits tenancy.Limits
	// LimitsRefresh is how often each node reloads the per-tenant overrides.
	LimitsRefresh time.Duration
	// KafkaBufferBytes bounds the producer's memory of records not yet acknowledged; when it is
	// full, ingest answers UNAVAILABLE at once.
	KafkaBufferBytes int64
	// RateLimitLocalShare is the share of each tenant's rate limit a node enforces on its own
	// while Redis is unreachable.
	RateLimitLocalShare float64
	// AuthFailureRate and AuthFailureBurst limit failed authentications per client address.
	AuthFailureRate  float64
	AuthFailureBurst int64
	// RollupApplyLanes is how many database transactions of one poll the rollup consumer runs
	// at once, and RollupMaxBatchEvents the most events in one of them.
	RollupApplyLanes     int
	RollupMaxBatchEvents int
	// RetentionInterval is how often a process running the rollup role deletes the data that
	// every tenant's retention limits let go (one node of the deployment at a time); 0 never.
	RetentionInterval time.Duration
}

// Bounds of Config.RetentionInterval when it is not 0.
const (
	MinRetentionInterval = time.Minute
	MaxRetentionInterval = 24 * time.Hour
)

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		GRPCAddr:             ":9090",
		HTTPAddr:             ":8080",
		KafkaPartitions:      12,
		KafkaReplication:     1,
		DataDir:              ".abacus",
		Roles:                slices.Clone(AllRoles),
		LogLevel:             slog.LevelInfo,
		LogFormat:            "json",
		AutoMigrate:          true,
		ShutdownTimeout:      20 * time.Second,
		AuthCacheTTL:         3 * time.Second,
		MaxRequestBytes:      8 << 20,
		ProduceTimeout:       10 * time.Second,
		DatabaseMaxConns:     20,
		StatementTimeout:     30 * time.Second,
		Limits:               tenancy.DefaultLimits(),
		LimitsRefresh:        5 * time.Second,
		KafkaBufferBytes:     64 << 20,
		RateLimitLocalShare:  1,
		AuthFailureRate:      1,
		AuthFailureBurst:     20,
		RollupApplyLanes:     2,
		RollupMaxBatchEvents: 20000,
		RetentionInterval:    time.Hour,
	}
}

// Has reports whether the process runs role r.
func (c Config) Has(r Role) bool { return slices.Contains(c.Roles, r) }

// Parse reads flags from args (without the program or subcommand name) and, for each flag not on
// the command line, the environment variable named in its usage (looked up with getenv). A
// malformed command line returns at once; bad values are all reported together, with the
// configuration read so far, so that the caller can add what Validate finds.
func Parse(name string, args []string, getenv func(string) string, output io.Writer) (Config, error) {
	cfg := Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)

	var brokers, roles, level string
	roles = joinRoles(cfg.Roles)
	level = cfg.LogLevel.String()

	vars := []struct {
		flag, env string
		bind      func(name, usage string)
		usage     string
	}{
		{"grpc-addr", "ABACUS_GRPC_ADDR", func(n, u string) { fs.StringVar(&cfg.GRPCAddr, n, cfg.GRPCAddr, u) }, "gRPC listen address"},
		{"http-addr", "ABACUS_HTTP_ADDR", func(n, u string) { fs.StringVar(&cfg.HTTPAddr, n, cfg.HTTPAddr, u) }, "HTTP listen address (REST gateway, /metrics, /healthz, /readyz, /openapi.json)"},
		{"database-url", "ABACUS_DATABASE_URL", func(n, u string) { fs.StringVar(&cfg.DatabaseURL, n, cfg.DatabaseURL, u) }, "PostgreSQL/TimescaleDB URL (dev: empty starts a private cluster)"},
		{"redis-url", "ABACUS_REDIS_URL", func(n, u string) { fs.StringVar(&cfg.RedisURL, n, cfg.RedisURL, u) }, "Redis URL (dev: empty starts a private redis-server)"},
		{"kafka-brokers", "ABACUS_KAFKA_BROKERS", func(n, u string) { fs.StringVar(&brokers, n, "", u) }, "comma-separated Kafka bootstrap brokers (dev: empty runs an in-process broker)"},
		{"kafka-partitions", "ABACUS_KAFKA_PARTITIONS", func(n, u string) { fs.IntVar(&cfg.KafkaPartitions, n, cfg.KafkaPartitions, u) }, "partitions of the event topic when abacusd creates it"},
		{"kafka-replication", "ABACUS_KAFKA_REPLICATION", func(n, u string) { fs.IntVar(&cfg.KafkaReplication, n, cfg.KafkaReplication, u) }, "replication factor of the topics when abacusd creates them"},
		{"admin-token", "ABACUS_ADMIN_TOKEN", func(n, u string) { fs.StringVar(&cfg.AdminToken, n, cfg.AdminToken, u) }, "operator token for AdminService (at least 16 characters; dev: generated when empty)"},
		{"data-dir", "ABACUS_DATA_DIR", func(n, u string) { fs.StringVar(&cfg.DataDir, n, cfg.DataDir, u) }, "dev mode state directory"},
		{"roles", "ABACUS_ROLES", func(n, u string) { fs.StringVar(&roles, n, roles, u) }, "comma-separated roles to run: ingest,query,admin,rollup"},
		{"log-level", "ABACUS_LOG_LEVEL", func(n, u string) { fs.StringVar(&level, n, level, u) }, "log level: debug, info, warn, error"},
		{"log-format", "ABACUS_LOG_FORMAT", func(n, u string) { fs.StringVar(&cfg.LogFormat, n, cfg.LogFormat, u) }, "log format: json or text"},
		{"auto-migrate", "ABACUS_AUTO_MIGRATE", func(n, u string) { fs.BoolVar(&cfg.AutoMigrate, n, cfg.AutoMigrate, u) }, "apply database migrations at start"},
		{"shutdown-timeout", "ABACUS_SHUTDOWN_TIMEOUT", func(n, u string) { fs.DurationVar(&cfg.ShutdownTimeout, n, cfg.ShutdownTimeout, u) }, "how long a graceful stop may drain before it is forced"},
		{"auth-cache-ttl", "ABACUS_AUTH_CACHE_TTL", func(n, u string) { fs.DurationVar(&cfg.AuthCacheTTL, n, cfg.AuthCacheTTL, u) }, "how long an API key lookup is cached (bounds revocation latency; at most 5s)"},
		{"max-request-bytes", "ABACUS_MAX_REQUEST_BYTES", func(n, u string) { fs.Int64Var(&cfg.MaxRequestBytes, n, cfg.MaxRequestBytes, u) }, "largest gRPC message or HTTP body accepted"},
		{"produce-timeout", "ABACUS_PRODUCE_TIMEOUT", func(n, u string) { fs.DurationVar(&cfg.ProduceTimeout, n, cfg.ProduceTimeout, u) }, "longest an ingest call waits for Kafka before answering UNAVAILABLE"},
		{"database-max-conns", "ABACUS_DATABASE_MAX_CONNS", func(n, u string) { fs.IntVar(&cfg.DatabaseMaxConns, n, cfg.DatabaseMaxConns, u) }, "PostgreSQL connection pool size"},
		{"statement-timeout", "ABACUS_STATEMENT_TIMEOUT", func(n, u string) { fs.DurationVar(&cfg.StatementTimeout, n, cfg.StatementTimeout, u) }, "PostgreSQL statement timeout"},
		{"max-event-bytes", "ABACUS_MAX_EVENT_BYTES", func(n, u string) { fs.IntVar(&cfg.Limits.MaxEventBytes, n, cfg.Limits.MaxEventBytes, u) }, "default limit: largest encoded event accepted"},
		{"event-past-window", "ABACUS_EVENT_PAST_WINDOW", func(n, u string) {
			fs.DurationVar(&cfg.Limits.TimestampPastWindow, n, cfg.Limits.TimestampPastWindow, u)
		}, "default limit: oldest event time accepted, relative to now"},
		{"event-future-window", "ABACUS_EVENT_FUTURE_WINDOW", func(n, u string) {
			fs.DurationVar(&cfg.Limits.TimestampFutureWindow, n, cfg.Limits.TimestampFutureWindow, u)
		}, "default limit: furthest-ahead event time accepted, relative to now"},
		{"default-events-per-second", "ABACUS_DEFAULT_EVENTS_PER_SECOND", func(n, u string) {
			fs.Float64Var(&cfg.Limits.EventsPerSecond, n, cfg.Limits.EventsPerSecond, u)
		}, "default limit: sustained accepted events per second per tenant, all nodes together"},
		{"default-events-burst", "ABACUS_DEFAULT_EVENTS_BURST", func(n, u string) { fs.Int64Var(&cfg.Limits.EventsBurst, n, cfg.Limits.EventsBurst, u) }, "default limit: events a tenant may send at once above its rate"},
		{"default-requests-per-second", "ABACUS_DEFAULT_REQUESTS_PER_SECOND", func(n, u string) {
			fs.Float64Var(&cfg.Limits.RequestsPerSecond, n, cfg.Limits.RequestsPerSecond, u)
		}, "default limit: ingest requests or stream batches per second per tenant"},
		{"default-max-batch-events", "ABACUS_DEFAULT_MAX_BATCH_EVENTS", func(n, u string) { fs.IntVar(&cfg.Limits.MaxBatchEvents, n, cfg.Limits.MaxBatchEvents, u) }, "default limit: events per request or stream batch"},
		{"default-max-properties", "ABACUS_DEFAULT_MAX_PROPERTIES", func(n, u string) { fs.IntVar(&cfg.Limits.MaxProperties, n, cfg.Limits.MaxProperties, u) }, "default limit: properties per event"},
		{"default-monthly-event-quota", "ABACUS_DEFAULT_MONTHLY_EVENT_QUOTA", func(n, u string) {
			fs.Int64Var(&cfg.Limits.MonthlyEventQuota, n, cfg.Limits.MonthlyEventQuota, u)
		}, "default limit: accepted events per tenant per calendar month (UTC), 0 = unlimited"},
		{"default-monthly-event-quota-soft", "ABACUS_DEFAULT_MONTHLY_EVENT_QUOTA_SOFT", func(n, u string) {
			fs.Int64Var(&cfg.Limits.MonthlyEventQuotaSoft, n, cfg.Limits.MonthlyEventQuotaSoft, u)
		}, "default soft threshold of the monthly quota, reported but not enforced, 0 = none"},
		{"default-query-requests-per-second", "ABACUS_DEFAULT_QUERY_REQUESTS_PER_SECOND", func(n, u string) {
			fs.Float64Var(&cfg.Limits.QueryRequestsPerSecond, n, cfg.Limits.QueryRequestsPerSecond, u)
		}, "default limit: query requests per second per tenant"},
		{"default-kafka-shards", "ABACUS_DEFAULT_KAFKA_SHARDS", func(n, u string) { fs.IntVar(&cfg.Limits.KafkaShards, n, cfg.Limits.KafkaShards, u) }, "default number of Kafka shards (record keys) per tenant"},
		{"default-raw-retention", "ABACUS_DEFAULT_RAW_RETENTION", func(n, u string) {
			fs.DurationVar(&cfg.Limits.RawRetention, n, cfg.Limits.RawRetention, u)
		}, "default limit: how long raw events are kept, by event time (at least the event past window + 24h)"},
		{"default-rollup-retention", "ABACUS_DEFAULT_ROLLUP_RETENTION", func(n, u string) {
			fs.DurationVar(&cfg.Limits.RollupRetention, n, cfg.Limits.RollupRetention, u)
		}, "default limit: how long rollups are kept (at least the raw retention)"},
		{"retention-interval", "ABACUS_RETENTION_INTERVAL", func(n, u string) {
			fs.DurationVar(&cfg.RetentionInterval, n, cfg.RetentionInterval, u)
		}, "how often the rollup role deletes data past every tenant's retention (1m-24h; 0 disables)"},
		{"limits-refresh", "ABACUS_LIMITS_REFRESH", func(n, u string) { fs.DurationVar(&cfg.LimitsRefresh, n, cfg.LimitsRefresh, u) }, "how often per-tenant limit overrides are reloaded"},
		{"kafka-buffer-bytes", "ABACUS_KAFKA_BUFFER_BYTES", func(n, u string) { fs.Int64Var(&cfg.KafkaBufferBytes, n, cfg.KafkaBufferBytes, u) }, "producer memory for unacknowledged records; when full, ingest answers UNAVAILABLE"},
		{"ratelimit-local-share", "ABACUS_RATELIMIT_LOCAL_SHARE", func(n, u string) {
			fs.Float64Var(&cfg.RateLimitLocalShare, n, cfg.RateLimitLocalShare, u)
		}, "share (0-1] of each tenant's rate limit one node enforces alone while Redis is unreachable"},
		{"auth-failure-rate", "ABACUS_AUTH_FAILURE_RATE", func(n, u string) { fs.Float64Var(&cfg.AuthFailureRate, n, cfg.AuthFailureRate, u) }, "failed authentications per second allowed per client address, after the burst"},
		{"rollup-apply-lanes", "ABACUS_ROLLUP_APPLY_LANES", func(n, u string) { fs.IntVar(&cfg.RollupApplyLanes, n, cfg.RollupApplyLanes, u) }, "database transactions of one poll the rollup consumer runs at once, each on its own partitions"},
		{"rollup-max-batch-events", "ABACUS_ROLLUP_MAX_BATCH_EVENTS", func(n, u string) {
			fs.IntVar(&cfg.RollupMaxBatchEvents, n, cfg.RollupMaxBatchEvents, u)
		}, "most events the rollup consumer applies in one database transaction"},
		{"auth-failure-burst", "ABACUS_AUTH_FAILURE_BURST", func(n, u string) { fs.Int64Var(&cfg.AuthFailureBurst, n, cfg.AuthFailureBurst, u) }, "failed authentications allowed at once per client address"},
	}
	for _, v := range vars {
		v.bind(v.flag, fmt.Sprintf("%s (env %s)", v.usage, v.env))
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	for _, v := range vars {
		if set[v.flag] {
			continue
		}
		if val := getenv(v.env); val != "" {
			if err := fs.Set(v.flag, val); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", v.env, val, err))
			}
		}
	}
	cfg.KafkaBrokers = splitList(brokers)
	var err error
	if cfg.Roles, err = parseRoles(roles); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("log level %q: %w", level, err))
	}
	return cfg, errors.Join(errs...)
}

// Validate returns every problem with the configuration of `abacusd serve`, joined.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, c.validateCommon()...)
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database URL is required (ABACUS_DATABASE_URL)"))
	}
	if c.RedisURL == "" {
		errs = append(errs, errors.New("redis URL is required (ABACUS_REDIS_URL)"))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("kafka brokers are required (ABACUS_KAFKA_BROKERS)"))
	}
	if len(c.AdminToken) < MinAdminTokenLen && c.Has(RoleAdmin) {
		errs = append(errs, fmt.Errorf("admin token must be at least %d characters (ABACUS_ADMIN_TOKEN)", MinAdminTokenLen))
	}
	return errors.Join(errs...)
}

// ValidateDev returns every problem with the configuration of `abacusd dev`, where the
// dependencies and the admin token may be left empty and are then provided.
func (c Config) ValidateDev() error {
	var errs []error
	errs = append(errs, c.validateCommon()...)
	if c.AdminToken != "" && len(c.AdminToken) < MinAdminTokenLen {
		errs = append(errs, fmt.Errorf("admin token must be at least %d characters (ABACUS_ADMIN_TOKEN)", MinAdminTokenLen))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required (ABACUS_DATA_DIR)"))
	}
	return errors.Join(errs...)
}

func (c Config) validateCommon() []error {
	var errs []error
	for name, addr := range map[string]string{"grpc addr (ABACUS_GRPC_ADDR)": c.GRPCAddr, "http addr (ABACUS_HTTP_ADDR)": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("at least one role is required (ABACUS_ROLES)"))
	}
	if c.KafkaPartitions < 1 || c.KafkaPartitions > 10000 {
		errs = append(errs, fmt.Errorf("kafka partitions must be 1-10000, got %d", c.KafkaPartitions))
	}
	if c.KafkaReplication < 1 || c.KafkaReplication > 32 {
		errs = append(errs, fmt.Errorf("kafka replication must be 1-32, got %d", c.KafkaReplication))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("log format must be json or text, got %q", c.LogFormat))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown timeout must be positive"))
	}
	if c.AuthCacheTTL <= 0 || c.AuthCacheTTL > 5*time.Second {
		errs = append(errs, fmt.Errorf("auth cache TTL must be in (0, 5s] so revocation takes effect within 5s, got %s", c.AuthCacheTTL))
	}
	if c.MaxRequestBytes < 1<<10 || c.MaxRequestBytes > 256<<20 {
		errs = append(errs, fmt.Errorf("max request bytes must be 1 KiB-256 MiB, got %d", c.MaxRequestBytes))
	}
	if c.ProduceTimeout <= 0 {
		errs = append(errs, errors.New("produce timeout must be positive"))
	}
	if c.DatabaseMaxConns < 2 || c.DatabaseMaxConns > 1000 {
		errs = append(errs, fmt.Errorf("database max conns must be 2-1000, got %d", c.DatabaseMaxConns))
	}
	if c.StatementTimeout <= 0 {
		errs = append(errs, errors.New("statement timeout must be positive"))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("default %w", err))
	}
	if int64(c.Limits.MaxEventBytes) > c.MaxRequestBytes {
		errs = append(errs, fmt.Errorf("max event bytes (%d) must not exceed max request bytes (%d)", c.Limits.MaxEventBytes, c.MaxRequestBytes))
	}
	if c.LimitsRefresh < 100*time.Millisecond || c.LimitsRefresh > time.Hour {
		errs = append(errs, fmt.Errorf("limits refresh must be 100ms-1h, got %s", c.LimitsRefresh))
	}
	if c.KafkaBufferBytes < 1<<20 || c.KafkaBufferBytes > 16<<30 {
		errs = append(errs, fmt.Errorf("kafka buffer bytes must be 1 MiB-16 GiB, got %d", c.KafkaBufferBytes))
	}
	if !(c.AuthFailureRate > 0) || c.AuthFailureBurst < 1 {
		errs = append(errs, fmt.Errorf("auth failure rate must be positive and burst at least 1, got %v and %d", c.AuthFailureRate, c.AuthFailureBurst))
	}
	if c.RollupApplyLanes < 1 || c.RollupApplyLanes > 64 {
		errs = append(errs, fmt.Errorf("rollup apply lanes must be 1-64, got %d", c.RollupApplyLanes))
	}
	if c.RollupMaxBatchEvents < 100 || c.RollupMaxBatchEvents > 1_000_000 {
		errs = append(errs, fmt.Errorf("rollup max batch events must be 100-1000000, got %d", c.RollupMaxBatchEvents))
	}
	if !(c.RateLimitLocalShare > 0 && c.RateLimitLocalShare <= 1) {
		errs = append(errs, fmt.Errorf("rate limit local share must be in (0, 1], got %v", c.RateLimitLocalShare))
	}
	if c.RetentionInterval != 0 && (c.RetentionInterval < MinRetentionInterval || c.RetentionInterval > MaxRetentionInterval) {
		errs = append(errs, fmt.Errorf("retention interval must be 0 (disabled) or %s-%s, got %s", MinRetentionInterval, MaxRetentionInterval, c.RetentionInterval))
	}
	return errs
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func parseRoles(s string) ([]Role, error) {
	var roles []Role
	var errs []error
	for _, part := range splitList(s) {
		r := Role(strings.ToLower(part))
		if !slices.Contains(AllRoles, r) {
			errs = append(errs, fmt.Errorf("unknown role %q (want one of %s)", part, joinRoles(AllRoles)))
			continue
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles, errors.Join(errs...)
}

func joinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
