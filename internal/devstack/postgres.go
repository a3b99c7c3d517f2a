package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// startTimeout bounds a start even when the caller's context has no
	// deadline: a server that neither becomes ready nor exits is broken.
	startTimeout = 2 * time.Minute
	// stopGrace is how long a server gets to shut down before it is killed.
	stopGrace = time.Minute
	// pgSuperuser is the bootstrap superuser created by initdb; the cluster
	// trusts every TCP connection from 127.0.0.1, so no password.
	pgSuperuser = "postgres"
)

// Postgres is a private PostgreSQL cluster started from the machine's
// binaries. Its directory holds the cluster (data/), the server log
// (postgres.log), the port file and a lock file.
type Postgres struct {
	logger    *slog.Logger
	opts      options
	inst      pgInstall
	dir       string
	dataDir   string
	logPath   string
	cred      *syscall.Credential // the postgres OS user when running as root, else nil
	timescale bool

	mu   sync.Mutex
	port int
	proc *child   // nil when not started by us or stopped
	lock *os.File // held from start until Stop
}

// StartPostgres starts a private PostgreSQL cluster in dir, creating it with
// initdb if dir holds none. It listens on 127.0.0.1 only, on the port
// recorded in dir if that is free, else on a new free port, which it records.
// A server left running by an earlier process on the same dir (for example
// an abacusd that was SIGKILLed) is stopped first, and a stale
// postmaster.pid is recovered. ctx bounds the start only; the server runs
// until Stop or until this process exits.
//
// Without options the cluster is durable (fsync on), for `abacusd dev`;
// tests pass [Ephemeral].
func StartPostgres(ctx context.Context, dir string, logger *slog.Logger, opts ...Option) (*Postgres, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	inst, err := findPostgres(ctx)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	p := &Postgres{
		logger:    logger,
		opts:      applyOptions(opts),
		inst:      inst,
		dir:       dir,
		dataDir:   filepath.Join(dir, "data"),
		logPath:   filepath.Join(dir, "postgres.log"),
		cred:      cred,
		timescale: fileExists(filepath.Join(inst.pkglibdir, "timescaledb.so")),
	}
	if err := p.prepareDir(); err != nil {
		return nil, fmt.Errorf("start postgres in %s: %w", dir, err)
	}
	p.lock, err = lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	err = p.initCluster(ctx)
	if err == nil {
		err = p.stopLeftoverPostmaster(ctx)
	}
	var port int
	var reused bool
	if err == nil {
		port, reused, err = choosePort(dir)
	}
	if err == nil {
		err = p.start(ctx, port, false)
	}
	if err != nil {
		unlockDir(p.lock)
		p.lock = nil
		return nil, fmt.Errorf("start postgres in %s: %w", dir, err)
	}
	logger.Info("private PostgreSQL started",
		"addr", p.addrLocked(), "data_dir", p.dataDir, "log", p.logPath,
		"version", inst.version, "timescaledb", p.timescale,
		"port_reused", reused && port == p.port, "durable", !p.opts.ephemeral)
	return p, nil
}

// URL returns a connection URL for database on this cluster, as the
// superuser, without TLS.
func (p *Postgres) URL(database string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pgURL(p.port, database)
}

// Port returns the TCP port the cluster listens on, on 127.0.0.1.
func (p *Postgres) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.port
}

// TimescaleAvailable reports whether timescaledb.so is installed in the
// PostgreSQL library directory (`pg_config --pkglibdir`), in which case the
// cluster preloads it and CREATE EXTENSION timescaledb works.
func (p *Postgres) TimescaleAvailable() bool { return p.timescale }

// CreateDatabase creates database name unless it exists.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	conn, err := connectPostgres(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the cluster down (fast shutdown: open sessions are rolled back,
// a checkpoint is written) and waits for it to exit. Stopping a stopped
// cluster is a no-op. Restart starts it again.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.stopLocked()
	unlockDir(p.lock)
	p.lock = nil
	if err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	return nil
}

// Kill stops the cluster abruptly, for crash tests: the postmaster gets
// SIGKILL, so there is no shutdown checkpoint and postmaster.pid stays
// behind, as after a crash. Restart runs crash recovery. Killing a stopped
// cluster is a no-op.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	p.proc.kill()
	p.proc = nil
	p.logger.Info("private PostgreSQL killed", "addr", p.addrLocked())
	return nil
}

// Restart starts the cluster again on the same directory and port, stopping
// it first if it is running. It fails if the port has been taken meanwhile.
func (p *Postgres) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	if p.lock == nil {
		lock, err := lockDir(p.dir)
		if err != nil {
			return fmt.Errorf("restart postgres: %w", err)
		}
		p.lock = lock
	}
	if err := p.stopLeftoverPostmaster(ctx); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	if err := p.start(ctx, p.port, true); err != nil {
		return fmt.Errorf("restart postgres in %s: %w", p.dir, err)
	}
	p.logger.Info("private PostgreSQL restarted", "addr", p.addrLocked(), "data_dir", p.dataDir)
	return nil
}

func (p *Postgres) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

func (p *Postgres) stopLocked() error {
	if p.proc == nil {
		return nil
	}
	proc := p.proc
	p.proc = nil
	// SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends.
	if err := proc.stop(syscall.SIGINT, stopGrace); err != nil {
		return err
	}
	p.logger.Info("private PostgreSQL stopped", "addr", p.addrLocked())
	return nil
}

// prepareDir creates dir and, when the server runs as another OS user, makes
// sure that user can reach it.
func (p *Postgres) prepareDir() error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	if p.cred == nil {
		return nil
	}
	return ensureSearchable(p.dir, p.cred, p.logger)
}

// initCluster runs initdb unless the data directory already holds a cluster.
// initdb works in a scratch directory that is renamed into place only when
// complete, so an interrupted initdb never leaves a half-made cluster.
func (p *Postgres) initCluster(ctx context.Context) error {
	if b, err := os.ReadFile(filepath.Join(p.dataDir, "PG_VERSION")); err == nil {
		if got := strings.TrimSpace(string(b)); got != p.inst.major {
			return fmt.Errorf("cluster in %s was created by PostgreSQL %s but the installed binaries (%s) are PostgreSQL %s; remove the directory to start afresh",
				p.dataDir, got, p.inst.bindir, p.inst.major)
		}
		return p.ensureOwner()
	}
	if entries, err := os.ReadDir(p.dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s exists but holds no PostgreSQL cluster (no PG_VERSION); remove it to start afresh", p.dataDir)
	}

	tmp := p.dataDir + ".init"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	if p.cred != nil {
		if err := os.Chown(tmp, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return err
		}
	}
	cmd := p.command(ctx, "initdb", "-D", tmp, "-A", "trust", "-U", pgSuperuser,
		"--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	_ = os.Remove(p.dataDir) // an empty leftover would block the rename
	if err := os.Rename(tmp, p.dataDir); err != nil {
		return err
	}
	p.logger.Info("initialized PostgreSQL cluster", "data_dir", p.dataDir, "version", p.inst.version)
	return nil
}

// ensureOwner gives the cluster to the postgres OS user if it belongs to
// someone else (for example it was created by a non-root run).
func (p *Postgres) ensureOwner() error {
	if p.cred == nil {
		return nil
	}
	st, err := os.Stat(p.dataDir)
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid == p.cred.Uid {
		return nil
	}
	p.logger.Warn("handing PostgreSQL cluster to the postgres OS user", "data_dir", p.dataDir)
	return filepath.WalkDir(p.dataDir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(p.cred.Uid), int(p.cred.Gid))
	})
}

// stopLeftoverPostmaster stops a postmaster still running on our data directory. We
// hold the directory lock, so it is not ours to share: it was left by a
// process that died (its parent-death shutdown may still be in progress) or
// was started by hand. A postmaster.pid naming a dead process needs nothing:
// postgres replaces stale lock files itself.
func (p *Postgres) stopLeftoverPostmaster(ctx context.Context) error {
	if !fileExists(filepath.Join(p.dataDir, "postmaster.pid")) {
		return nil
	}
	// Exit status 0 means running; 3 means not running (stale pid file).
	if err := p.command(ctx, "pg_ctl", "status", "-D", p.dataDir).Run(); err != nil {
		return nil //nolint:nilerr // not running is the normal case
	}
	p.logger.Warn("stopping PostgreSQL left running by an earlier process", "data_dir", p.dataDir)
	out, err := p.command(ctx, "pg_ctl", "stop", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop leftover postgres: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs the postmaster on port and waits until it accepts connections.
// Unless pinned, a port taken since it was chosen is replaced by a new one.
func (p *Postgres) start(ctx context.Context, port int, pinned bool) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	const maxPortRetries = 3
	retries := 0
	for {
		if pinned {
			// A killed postmaster's port is freed a moment after its death.
			if err := waitPortFree(ctx, port); err != nil {
				return err
			}
		} else if !portFree(port) {
			if retries >= maxPortRetries {
				return fmt.Errorf("port %d on 127.0.0.1 is taken by another process", port)
			}
			retries++
			var err error
			if port, err = freePort(); err != nil {
				return err
			}
			continue
		}
		offset := fileSize(p.logPath)
		proc, err := p.spawn(port)
		if err != nil {
			return err
		}
		err = waitPostgres(ctx, proc, pgURL(port, "postgres"), p.dataDir)
		if err == nil {
			p.proc, p.port = proc, port
			return writePortFile(p.dir, port)
		}
		proc.kill()
		tail := logTail(p.logPath, offset)
		switch {
		case ctx.Err() != nil:
		case !pinned && retries < maxPortRetries && (isAddrInUse(tail) || errors.Is(err, errWrongServer)):
			retries++
			if port, err = freePort(); err != nil {
				return err
			}
			continue
		case strings.Contains(tail, "pre-existing shared memory block"):
			// Backends of a killed postmaster still hold its shared
			// memory; they exit as soon as they notice it is gone.
			if werr := pause(ctx, 50*time.Millisecond); werr == nil {
				continue
			}
		}
		return fmt.Errorf("%w; server log:\n%s", err, tail)
	}
}

// spawn starts the postmaster as our child, logging to postgres.log.
func (p *Postgres) spawn(port int) (*child, error) {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(p.inst.bindir, "postgres"), p.serverArgs(port)...)
	cmd.Dir = p.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	// On parent death: SIGINT, a fast shutdown, so the cluster stays clean.
	proc, err := startChild(cmd, syscall.SIGINT)
	if err != nil {
		return nil, fmt.Errorf("run postgres: %w", err)
	}
	return proc, nil
}

func (p *Postgres) serverArgs(port int) []string {
	args := []string{"-D", p.dataDir, "-p", strconv.Itoa(port)}
	set := func(name, value string) { args = append(args, "-c", name+"="+value) }
	set("listen_addresses", "127.0.0.1")
	// TCP only: socket paths under deep temporary directories overflow
	// sun_path, and every client here connects over TCP anyway.
	set("unix_socket_directories", "")
	set("max_connections", "200")
	set("timezone", "UTC")
	set("log_timezone", "UTC")
	set("log_checkpoints", "off")
	if p.opts.ephemeral {
		set("shared_buffers", "32MB")
		// Commits still write their WAL before returning (synchronous_commit
		// stays on), so committed data survives Kill; it just never waits
		// for the disk, and only a machine crash could lose it.
		set("fsync", "off")
		set("full_page_writes", "off")
	} else {
		set("shared_buffers", "128MB")
	}
	if p.timescale {
		set("shared_preload_libraries", "timescaledb")
		set("timescaledb.telemetry_level", "off")
	}
	return args
}

// command builds an invocation of one of the PostgreSQL tools, run as the
// postgres OS user when we are root. The tools resolve their own path, which
// fails if the working directory is unreadable to them, so they run in dir.
func (p *Postgres) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.inst.bindir, tool), args...)
	cmd.Dir = p.dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	return cmd
}

// errWrongServer means another server answered on the port we started ours on.
var errWrongServer = errors.New("another server answers on this port")

// waitPostgres polls until the server accepts connections, it exits, or ctx
// ends. It checks that the server answering is ours: a port can be taken
// between choosing it and binding it.
func waitPostgres(ctx context.Context, proc *child, url, dataDir string) error {
	delay := 10 * time.Millisecond
	for {
		conn, err := connectPostgres(ctx, url)
		if err == nil {
			var served string
			err = conn.QueryRow(ctx, "SHOW data_directory").Scan(&served)
			conn.Close(context.WithoutCancel(ctx))
			if err == nil && filepath.Clean(served) != filepath.Clean(dataDir) {
				return fmt.Errorf("%w: it serves %s", errWrongServer, served)
			}
			if err == nil {
				return nil
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.done:
			t.Stop()
			return fmt.Errorf("postgres exited during startup: %v", proc.err)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for postgres to accept connections: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

func connectPostgres(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

func pgURL(port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(pgSuperuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pgInstall is where the machine's PostgreSQL lives.
type pgInstall struct {
	bindir    string
	pkglibdir string
	version   string // e.g. 15.14
	major     string // e.g. 15, as written in PG_VERSION
}

// findPostgres locates the server binaries: `pg_config --bindir` first, then
// the newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH), then
// wherever an initdb on PATH points.
func findPostgres(ctx context.Context) (pgInstall, error) {
	var candidates []string
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(globbed, func(a, b string) int { // newest major first
		return versionNumber(filepath.Base(filepath.Dir(b))) - versionNumber(filepath.Base(filepath.Dir(a)))
	})
	candidates = append(candidates, globbed...)
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
	}
	for _, dir := range candidates {
		if !isExecutable(filepath.Join(dir, "initdb")) || !isExecutable(filepath.Join(dir, "postgres")) || !isExecutable(filepath.Join(dir, "pg_ctl")) {
			continue
		}
		out, err := exec.CommandContext(ctx, filepath.Join(dir, "postgres"), "--version").Output()
		if err != nil {
			continue
		}
		version := parsePostgresVersion(string(out))
		major, _, _ := strings.Cut(version, ".")
		return pgInstall{
			bindir:    dir,
			pkglibdir: pkglibdir(ctx, dir),
			version:   version,
			major:     major,
		}, nil
	}
	return pgInstall{}, ErrPostgresNotInstalled
}

// pkglibdir asks the pg_config that belongs to bindir for the library
// directory, where extensions such as timescaledb.so live.
func pkglibdir(ctx context.Context, bindir string) string {
	for _, pgConfig := range []string{filepath.Join(bindir, "pg_config"), "pg_config"} {
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir", "--pkglibdir").Output()
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) == 2 && filepath.Clean(lines[0]) == filepath.Clean(bindir) {
			return strings.TrimSpace(lines[1])
		}
	}
	return filepath.Join(filepath.Dir(bindir), "lib")
}

// parsePostgresVersion extracts "15.14" from
// "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)".
func parsePostgresVersion(out string) string {
	_, after, ok := strings.Cut(out, ")")
	if !ok {
		return strings.TrimSpace(out)
	}
	fields := strings.Fields(after)
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

func versionNumber(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// postgresCredential returns who the PostgreSQL tools run as: nil (this
// process's user) normally, the postgres OS user when we are root, because
// initdb and postgres refuse to run as root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgSuperuser)
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL has to run as the %q OS user, which is missing (install the postgresql package or run as a normal user): %w", pgSuperuser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of %q: %w", pgSuperuser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of %q: %w", pgSuperuser, err)
	}
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// ensureSearchable grants search permission (o+x, never read) on dir and
// every ancestor that the user in cred could not otherwise pass through, so
// that postgres can reach its cluster. t.TempDir and os.MkdirTemp make 0700
// directories, which root can pass and postgres cannot.
func ensureSearchable(dir string, cred *syscall.Credential, logger *slog.Logger) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if !canSearch(st, cred) {
			if err := os.Chmod(d, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("let the postgres OS user reach %s: %w", dir, err)
			}
			logger.Warn("granted search permission so the postgres OS user can reach its cluster", "dir", d)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

func canSearch(st os.FileInfo, cred *syscall.Credential) bool {
	perm := st.Mode().Perm()
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return perm&0o001 != 0
	case sys.Uid == cred.Uid:
		return perm&0o100 != 0
	case sys.Gid == cred.Gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0
}
