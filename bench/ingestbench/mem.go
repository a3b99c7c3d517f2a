package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

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
