package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

// child is a long-running process of the benchmark (abacusd, the bare server), supervised by
// devstack.Process, with its output in a log file.
type child struct {
	*devstack.Process
	name string
	log  string
}

// startChild starts cmd with its output appended to logPath unless cmd.Stdout is set. On Linux
// the kernel kills it when this process dies (devstack.StartProcess).
func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
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
	return &child{Process: proc, name: name, log: logPath}, nil
}

func (c *child) pid() int { return c.Pid() }

// exited reports whether the process has ended, and how.
func (c *child) exited() (bool, error) { return c.Exited() }

// stop sends SIGTERM and waits up to grace for the process to exit, then kills it. How a
// process that stopped in time exited does not matter here.
func (c *child) stop(grace time.Duration) error {
	if done, _ := c.exited(); done {
		return nil
	}
	if err := c.Stop(syscall.SIGTERM, grace); err != nil {
		if done, _ := c.exited(); done && !errors.Is(err, devstack.ErrKilled) {
			return nil
		}
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// logTail returns the last lines of the child's log, for an error message.
func (c *child) logTail() string { return tailFile(c.log, 4096) }

func tailFile(path string, n int64) string {
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

// Memory figures of a process, in bytes.
type memStatus struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: the largest RSS since the process started
}

// maxStatusBytes bounds how much of /proc/PID/status is read.
const maxStatusBytes = 64 << 10

// readMemStatus reads the memory figures of process pid from /proc.
func readMemStatus(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatusBytes))
	if err != nil {
		return memStatus{}, err
	}
	return parseMemStatus(b)
}

// parseMemStatus reads VmRSS and VmHWM from the text of /proc/PID/status ("VmRSS:\t  1234 kB").
func parseMemStatus(b []byte) (memStatus, error) {
	var m memStatus
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst, haveRSS = &m.RSS, true
		case "VmHWM":
			dst, haveHWM = &m.HWM, true
		default:
			continue
		}
		fields := bytes.Fields(value)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return memStatus{}, fmt.Errorf("status line %q: want \"<n> kB\"", sc.Bytes())
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return memStatus{}, fmt.Errorf("status line %q: bad size", sc.Bytes())
		}
		*dst = kb << 10
	}
	if err := sc.Err(); err != nil {
		return memStatus{}, err
	}
	if !haveRSS || !haveHWM {
		return memStatus{}, errors.New("status has no VmRSS or VmHWM")
	}
	return m, nil
}

// rssSampler records the peak resident memory of a process per phase.
type rssSampler struct {
	pid   int
	mu    sync.Mutex
	phase string
	peaks map[string]int64
	err   error
}

func newRSSSampler(pid int) *rssSampler {
	return &rssSampler{pid: pid, peaks: map[string]int64{}}
}

// setPhase attributes the following samples to phase ("" for none).
func (s *rssSampler) setPhase(phase string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase = phase
}

// run samples every interval until ctx ends or the process is gone.
func (s *rssSampler) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m, err := readMemStatus(s.pid)
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		s.peaks[s.phase] = max(s.peaks[s.phase], m.RSS)
		s.peaks["all"] = max(s.peaks["all"], m.RSS)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peak returns the largest sample of phase ("all": of every phase).
func (s *rssSampler) peak(phase string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peaks[phase]
}
