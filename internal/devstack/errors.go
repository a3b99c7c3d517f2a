package devstack

import "errors"

var (
	// ErrPostgresNotInstalled means no PostgreSQL server binaries were found.
	// Run internal/devstack/install-deps.sh (as root) or install the
	// distribution's postgresql package.
	ErrPostgresNotInstalled = errors.New("devstack: PostgreSQL server binaries (initdb, postgres) not found; run internal/devstack/install-deps.sh or install the postgresql package")

	// ErrRedisNotInstalled means redis-server was not found.
	// Run internal/devstack/install-deps.sh (as root) or install the
	// distribution's redis-server package.
	ErrRedisNotInstalled = errors.New("devstack: redis-server not found; run internal/devstack/install-deps.sh or install the redis-server package")

	// ErrDirInUse means another process (or another server in this process)
	// is already running from the same directory.
	ErrDirInUse = errors.New("devstack: directory is in use by another running server")

	// ErrNotRunning means the server was asked to do something that needs it
	// running, or it exited on its own.
	ErrNotRunning = errors.New("devstack: server is not running")
)
