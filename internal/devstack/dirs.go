package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	portFileName = "port"
	lockFileName = "devstack.lock"
	// portWait is how long a restart waits for its port to be released.
	portWait = 15 * time.Second
)

// options are the knobs shared by the private servers.
type options struct {
	ephemeral bool
}

// Option tunes a private server started by [StartPostgres] or [StartRedis].
type Option func(*options)

// Ephemeral trades durability for speed, for tests only: PostgreSQL runs
// with fsync and full_page_writes off and small shared buffers; Redis keeps
// no append-only file, so its data does not survive a restart. Committed
// PostgreSQL transactions still survive Stop/Restart and Kill/Restart (their
// WAL is written before the commit returns and the OS page cache holds it),
// but not a machine crash.
func Ephemeral() Option { return func(o *options) { o.ephemeral = true } }

func applyOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// lockDir takes an exclusive, non-blocking lock on dir. The lock belongs to
// the open file, so it is released when the file is closed or this process
// dies, whichever comes first; the file is close-on-exec, so children do not
// keep it alive.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrDirInUse, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// unlockDir releases a lock taken by lockDir.
func unlockDir(f *os.File) {
	if f != nil {
		_ = f.Close() // closing releases the flock
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// may take it before the server binds it; starters retry on bind failures.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether 127.0.0.1:port can be bound right now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// waitPortFree polls until 127.0.0.1:port can be bound, for at most
// portWait or until ctx ends.
func waitPortFree(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, portWait)
	defer cancel()
	for !portFree(port) {
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("port %d on 127.0.0.1 is taken by another process: %w", port, err)
		}
	}
	return nil
}

// readPortFile returns the port recorded in dir, or 0.
func readPortFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, portFileName))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

// writePortFile records port in dir, atomically.
func writePortFile(dir string, port int) error {
	tmp := filepath.Join(dir, portFileName+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write port file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, portFileName)); err != nil {
		return fmt.Errorf("write port file: %w", err)
	}
	return nil
}

// choosePort returns the port recorded in dir if it is free, else a new one.
func choosePort(dir string) (port int, reused bool, err error) {
	if p := readPortFile(dir); p != 0 && portFree(p) {
		return p, true, nil
	}
	p, err := freePort()
	return p, false, err
}

// isAddrInUse reports whether a server's startup log says its port was taken.
func isAddrInUse(log string) bool {
	return strings.Contains(log, "Address already in use") || strings.Contains(log, "could not bind")
}
