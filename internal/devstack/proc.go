package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrKilled is returned (wrapped) by a stop that had to kill the process
// because it did not exit in time after the stop signal.
var ErrKilled = errors.New("killed")

// child is a long-running server process started by this package.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // cmd.Wait's result; read only after done is closed
}

// startChild starts cmd in its own process group and, on Linux, asks the
// kernel to send deathSig to it when this process dies.
//
// The process group keeps a terminal's Ctrl-C away from the child: the
// signal reaches abacusd, which then stops its dependencies in order rather
// than having them vanish underneath it.
//
// The kernel sends the parent-death signal when the thread that forked the
// child exits, not when the process does. The Go runtime may retire idle
// threads, so the goroutine that forks the child locks itself to its thread
// and stays on it, in cmd.Wait, for the child's whole life.
func startChild(cmd *exec.Cmd, deathSig syscall.Signal) (*child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr, deathSig)

	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: when this goroutine returns, its thread
		// ends with it, which is exactly what we want.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child; a child that already exited is not an error.
func (c *child) signal(sig syscall.Signal) error {
	if c.exited() {
		return nil
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, c.pid(), err)
	}
	return nil
}

// stop sends sig and waits up to grace for the child to exit, then kills it.
// It returns the child's exit error unless the child was killed here.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	if err := c.signal(sig); err != nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
	}
	if err := c.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-c.done
	return fmt.Errorf("%w: pid %d did not stop within %v after %v", ErrKilled, c.pid(), grace, sig)
}

// kill sends SIGKILL and waits until the child has been reaped, so that its
// pid is really gone (a zombie would still look alive to a lock-file check).
func (c *child) kill() {
	_ = c.signal(syscall.SIGKILL)
	<-c.done
}

// childEnv is this process's environment without variables that would steer
// the PostgreSQL or Redis tools away from the arguments we pass them.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// logTail returns the end of the log file f written since offset, for error
// messages: the reason a server refused to start is usually its last lines.
func logTail(path string, offset int64) string {
	const maxTail = 4 << 10
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(offset, st.Size()-maxTail)
	if start < 0 || start > st.Size() {
		start = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, start, st.Size()-start))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// fileSize returns the size of path, or 0.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// stopLeftover stops the process recorded in pidFile if it is still alive
// and its command line contains name, and waits until it is gone. Callers
// hold the directory lock, so such a process was left behind by an earlier
// owner that died; it must be gone before a new server uses the same files
// and port. Without /proc (not Linux) nothing is done: a recycled pid could
// name an unrelated process.
func stopLeftover(ctx context.Context, logger *slog.Logger, pidFile, name string, sig syscall.Signal) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil //nolint:nilerr // no pid file: nothing left behind
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !processMatches(pid, name) {
		return nil //nolint:nilerr // garbage or stale pid file
	}
	logger.Warn("stopping server left running by an earlier process", "pid", pid, "name", name)
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop leftover %s (pid %d): %w", name, pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, stopGrace)
	defer cancel()
	for processMatches(pid, name) {
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("stop leftover %s (pid %d): %w", name, pid, err)
		}
	}
	return nil
}

// processMatches reports whether pid is a live (not zombie) process whose
// command line contains name. A zombie has an empty command line.
func processMatches(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), name)
}

// Process is a long-running child process supervised as this package
// supervises its servers: in its own process group, killed by the kernel
// (on Linux) when this process dies, and reaped by a goroutine that keeps
// the forking thread alive for the child's whole life (see startChild).
// Other programs of the module that run servers — the benchmark driver —
// use it rather than a copy of that logic.
type Process struct{ c *child }

// StartProcess starts cmd as a [Process]; deathSig is what the kernel sends
// it when this process dies.
func StartProcess(cmd *exec.Cmd, deathSig syscall.Signal) (*Process, error) {
	c, err := startChild(cmd, deathSig)
	if err != nil {
		return nil, err
	}
	return &Process{c: c}, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.c.pid() }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.c.done }

// Exited reports whether the process has exited and, if so, cmd.Wait's
// result.
func (p *Process) Exited() (bool, error) {
	if !p.c.exited() {
		return false, nil
	}
	return true, p.c.err
}

// Stop sends sig and waits up to grace for the process to exit, then kills
// it. It returns the exit error unless the process had to be killed, which
// is an error of its own.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error { return p.c.stop(sig, grace) }
