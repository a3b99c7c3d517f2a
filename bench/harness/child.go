package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

// logTailBytes is how much of a child's log an error message quotes.
const logTailBytes = 4096

// Child is a long-running process of a benchmark (abacusd, a baseline server), supervised by
// devstack.Process, with its output in a log file.
type Child struct {
	*devstack.Process
	name string
	log  string
}

// StartChild starts cmd with its output appended to logPath (stdout only unless cmd.Stdout is
// set). On Linux the kernel kills it when this process dies (devstack.StartProcess).
func StartChild(name string, cmd *exec.Cmd, logPath string) (*Child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = logFile
	}
	cmd.Stderr = logFile
	proc, err := devstack.StartProcess(cmd, syscall.SIGKILL)
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		<-proc.Done()
		_ = logFile.Close()
	}()
	return &Child{Process: proc, name: name, log: logPath}, nil
}

// Name is the child's name in messages.
func (c *Child) Name() string { return c.name }

// LogPath is the file the child's output goes to.
func (c *Child) LogPath() string { return c.log }

// Terminate sends SIGTERM and waits up to grace for the process to exit, then kills it. How a
// process that stopped in time exited does not matter here.
func (c *Child) Terminate(grace time.Duration) error {
	if done, _ := c.Exited(); done {
		return nil
	}
	if err := c.Stop(syscall.SIGTERM, grace); err != nil {
		if done, _ := c.Exited(); done && !errors.Is(err, devstack.ErrKilled) {
			return nil
		}
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// LogTail returns the last lines of the child's log, for an error message.
func (c *Child) LogTail() string { return TailFile(c.log, logTailBytes) }

// TailFile returns the last n bytes of the file at path, or "" when it cannot be read.
func TailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return string(b)
}

// RunToEnd runs bin with args to completion, with its output in logPath. When ctx ends first,
// the process is stopped and ctx's error returned.
func RunToEnd(ctx context.Context, bin string, args, env []string, logPath string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	c, err := StartChild(filepath.Base(bin)+" "+args[0], cmd, logPath)
	if err != nil {
		return err
	}
	select {
	case <-c.Done():
		_, err := c.Exited()
		return err
	case <-ctx.Done():
		_ = c.Terminate(5 * time.Second)
		return ctx.Err()
	}
}

// ChildEnv is the environment of a child: the few variables a process needs from ours, none of
// our ABACUS_* ones, and vars.
func ChildEnv(vars map[string]string) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}
