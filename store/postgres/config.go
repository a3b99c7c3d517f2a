package postgres

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults applied by [Open] to zero [Config] fields.
const (
	// DefaultMaxConns bounds the pool when Config.MaxConns is zero. Every
	// role of abacusd shares one pool; ten connections keep a 2-core node
	// busy without crowding a small PostgreSQL (default max_connections 100).
	DefaultMaxConns int32 = 10

	// DefaultStatementTimeout is the server-side statement_timeout when
	// Config.StatementTimeout is zero. It stops a runaway query from holding
	// a connection forever; callers bound their own waits with ctx.
	DefaultStatementTimeout = 30 * time.Second
)

// Pool limits that are not configurable. Connections are recycled so that a
// failover or a changed DNS name is picked up, with jitter so they do not all
// reconnect at once.
const (
	maxConnLifetime       = 30 * time.Minute
	maxConnLifetimeJitter = 5 * time.Minute
	maxConnIdleTime       = 5 * time.Minute
	healthCheckPeriod     = 30 * time.Second
	defaultConnectTimeout = 10 * time.Second
	applicationName       = "abacus"
)

// errBadURL deliberately leaves out pgx's parse error: it quotes the
// connection string, whose password it can only redact on a best-effort basis.
var errBadURL = errors.New("postgres: URL is not a valid PostgreSQL connection string (not shown: it may hold a password)")

// Config configures the connection pool opened by [Open].
type Config struct {
	// URL is a PostgreSQL connection string (postgres://user:pass@host:port/db?...
	// or key=value form), as accepted by pgx. Required.
	URL string

	// MaxConns is the largest number of pooled connections; zero means
	// [DefaultMaxConns].
	MaxConns int32

	// StatementTimeout is the server-side statement_timeout of every pooled
	// connection; zero means [DefaultStatementTimeout]. Migrations run on a
	// dedicated connection without it.
	StatementTimeout time.Duration

	// DisableTimescale makes the schema use plain PostgreSQL tables even when
	// the TimescaleDB extension is available. It only matters when the first
	// migration runs: an existing schema keeps the layout it was created with.
	DisableTimescale bool
}

// Validate reports every problem of c, joined, or nil.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("postgres: URL is required"))
	} else if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		errs = append(errs, errBadURL)
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("postgres: MaxConns must not be negative, got %d", c.MaxConns))
	}
	if c.StatementTimeout < 0 {
		errs = append(errs, fmt.Errorf("postgres: StatementTimeout must not be negative, got %s", c.StatementTimeout))
	} else if c.StatementTimeout > 0 && c.StatementTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("postgres: StatementTimeout must be at least 1ms, got %s", c.StatementTimeout))
	}
	return errors.Join(errs...)
}

// poolConfig turns a validated Config into a pgxpool configuration.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, errBadURL
	}
	pc.MaxConns = c.MaxConns
	if pc.MaxConns == 0 {
		pc.MaxConns = DefaultMaxConns
	}
	pc.MinConns = 0
	pc.MaxConnLifetime = maxConnLifetime
	pc.MaxConnLifetimeJitter = maxConnLifetimeJitter
	pc.MaxConnIdleTime = maxConnIdleTime
	pc.HealthCheckPeriod = healthCheckPeriod
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}

	timeout := c.StatementTimeout
	if timeout == 0 {
		timeout = DefaultStatementTimeout
	}
	params := pc.ConnConfig.RuntimeParams
	params["statement_timeout"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	if params["application_name"] == "" {
		params["application_name"] = applicationName
	}
	// Every query names its time zone explicitly; a UTC session makes the
	// ones a person types into psql over this connection agree with them.
	if params["timezone"] == "" && params["TimeZone"] == "" {
		params["timezone"] = "UTC"
	}
	return pc, nil
}
