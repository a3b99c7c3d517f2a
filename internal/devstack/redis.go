package devstack

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// redisDatabases is how many logical databases the private Redis offers, so
// that every test of a package can take an index of its own.
const redisDatabases = 10000

// Redis is a private redis-server child. Its directory holds the
// append-only file (unless [Ephemeral]), the server log (redis.log), the port
// file and a lock file.
type Redis struct {
	logger  *slog.Logger
	opts    options
	bin     string
	dir     string
	logPath string

	mu   sync.Mutex
	port int
	proc *child
	lock *os.File
}

// StartRedis starts a private redis-server in dir, listening on 127.0.0.1
// only, on the port recorded in dir if that is free, else on a new free port,
// which it records. It offers 10000 logical databases. ctx bounds the start
// only; the server runs until Stop or until this process exits.
//
// Without options the server keeps an append-only file, for `abacusd dev`;
// tests pass [Ephemeral].
func StartRedis(ctx context.Context, dir string, logger *slog.Logger, opts ...Option) (*Redis, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	bin, err := findRedis()
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	r := &Redis{
		logger:  logger,
		opts:    applyOptions(opts),
		bin:     bin,
		dir:     dir,
		logPath: filepath.Join(dir, "redis.log"),
	}
	r.lock, err = lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = stopLeftover(ctx, logger, r.pidPath(), "redis-server", syscall.SIGTERM)
	var port int
	var reused bool
	if err == nil {
		port, reused, err = choosePort(dir)
	}
	if err == nil {
		err = r.start(ctx, port, false)
	}
	if err != nil {
		unlockDir(r.lock)
		r.lock = nil
		return nil, fmt.Errorf("start redis in %s: %w", dir, err)
	}
	logger.Info("private Redis started", "addr", r.addrLocked(), "dir", dir, "log", r.logPath,
		"port_reused", reused && port == r.port, "durable", !r.opts.ephemeral)
	return r, nil
}

// URL returns the URL of logical database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Addr returns the host:port the server listens on.
func (r *Redis) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrLocked()
}

// Stop shuts the server down (SIGTERM: it flushes the append-only file) and
// waits for it to exit. Stopping a stopped server is a no-op.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.stopLocked()
	unlockDir(r.lock)
	r.lock = nil
	if err != nil {
		return fmt.Errorf("stop redis: %w", err)
	}
	return nil
}

// Restart starts the server again on the same directory and port, stopping
// it first if it is running. Data survives unless the server is [Ephemeral].
func (r *Redis) Restart(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.stopLocked(); err != nil {
		return fmt.Errorf("restart redis: %w", err)
	}
	if r.lock == nil {
		lock, err := lockDir(r.dir)
		if err != nil {
			return fmt.Errorf("restart redis: %w", err)
		}
		r.lock = lock
	}
	if err := stopLeftover(ctx, r.logger, r.pidPath(), "redis-server", syscall.SIGTERM); err != nil {
		return fmt.Errorf("restart redis: %w", err)
	}
	if err := r.start(ctx, r.port, true); err != nil {
		return fmt.Errorf("restart redis in %s: %w", r.dir, err)
	}
	r.logger.Info("private Redis restarted", "addr", r.addrLocked(), "dir", r.dir)
	return nil
}

func (r *Redis) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

func (r *Redis) pidPath() string { return filepath.Join(r.dir, "redis.pid") }

func (r *Redis) stopLocked() error {
	if r.proc == nil {
		return nil
	}
	proc := r.proc
	r.proc = nil
	if err := proc.stop(syscall.SIGTERM, stopGrace); err != nil {
		return err
	}
	r.logger.Info("private Redis stopped", "addr", r.addrLocked())
	return nil
}

// start runs redis-server on port and waits until it answers PING. Unless
// pinned, a port taken since it was chosen is replaced by a new one.
func (r *Redis) start(ctx context.Context, port int, pinned bool) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	const maxPortRetries = 3
	for retries := 0; ; retries++ {
		if pinned {
			if err := waitPortFree(ctx, port); err != nil {
				return err
			}
		} else if !portFree(port) {
			if retries >= maxPortRetries {
				return fmt.Errorf("port %d on 127.0.0.1 is taken by another process", port)
			}
			var err error
			if port, err = freePort(); err != nil {
				return err
			}
			continue
		}
		offset := fileSize(r.logPath)
		proc, err := r.spawn(port)
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = waitRedis(ctx, proc, addr)
		if err == nil {
			r.proc, r.port = proc, port
			return writePortFile(r.dir, port)
		}
		proc.kill()
		tail := logTail(r.logPath, offset)
		if ctx.Err() == nil && !pinned && retries < maxPortRetries && isAddrInUse(tail) {
			if port, err = freePort(); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("%w; server log:\n%s", err, tail)
	}
}

func (r *Redis) spawn(port int) (*child, error) {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	appendOnly := "yes"
	if r.opts.ephemeral {
		appendOnly = "no"
	}
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--save", "",
		"--appendonly", appendOnly,
		"--databases", strconv.Itoa(redisDatabases),
		"--daemonize", "no",
		"--logfile", "",
		// Recorded so that a later start can stop a server whose parent
		// died without stopping it (see stopLeftover).
		"--pidfile", r.pidPath(),
	)
	cmd.Dir = r.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// On parent death: SIGTERM, which flushes the append-only file.
	proc, err := startChild(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("run redis-server: %w", err)
	}
	return proc, nil
}

// waitRedis polls until the server answers PING (not LOADING), it exits, or
// ctx ends.
func waitRedis(ctx context.Context, proc *child, addr string) error {
	delay := 5 * time.Millisecond
	for {
		err := pingRedis(ctx, addr)
		if err == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.done:
			t.Stop()
			return fmt.Errorf("redis-server exited during startup: %v", proc.err)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for redis to answer PING: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// pingRedis sends one PING in the inline protocol; it needs no client library.
func pingRedis(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func findRedis() (string, error) {
	if path, err := exec.LookPath("redis-server"); err == nil {
		return path, nil
	}
	for _, path := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if isExecutable(path) {
			return path, nil
		}
	}
	return "", ErrRedisNotInstalled
}
