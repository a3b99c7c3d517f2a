package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/bench/harness"
)

// clockTick is the unit of the CPU times in /proc/PID/stat: USER_HZ, which Linux fixes at 100
// on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// maxStatBytes bounds how much of a /proc/PID/stat file is read; the file is one short line.
const maxStatBytes = 4096

// procStat is what the benchmark reads from /proc/PID/stat.
type procStat struct {
	ppid int
	// cpu is the process's user and system time, cpuChildren that of its children it waited
	// for.
	cpu, cpuChildren time.Duration
}

// parseProcStat parses the text of /proc/PID/stat. The second field, the command name in
// parentheses, may hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat has no command name")
	}
	// Fields 3 (state) onwards; field k is at index k-3.
	fields := strings.Fields(string(b[i+1:]))
	const (
		ppidField   = 4
		utimeField  = 14
		cstimeField = 17
	)
	if len(fields) < cstimeField-2 {
		return procStat{}, fmt.Errorf("stat has %d fields after the command name, want at least %d", len(fields), cstimeField-2)
	}
	nums := make([]int64, 0, 5)
	for _, k := range []int{ppidField, utimeField, utimeField + 1, utimeField + 2, utimeField + 3} {
		n, err := strconv.ParseInt(fields[k-3], 10, 64)
		if err != nil || n < 0 {
			return procStat{}, fmt.Errorf("stat field %d is %q, want a number", k, fields[k-3])
		}
		nums = append(nums, n)
	}
	return procStat{
		ppid:        int(nums[0]),
		cpu:         time.Duration(nums[1]+nums[2]) * clockTick,
		cpuChildren: time.Duration(nums[3]+nums[4]) * clockTick,
	}, nil
}

// readProcStat reads /proc/<pid>/stat ("self" for this process).
func readProcStat(pid string) (procStat, error) {
	f, err := os.Open(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return procStat{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatBytes))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

// cpuUse is CPU time taken by the processes of a run.
type cpuUse struct {
	// Abacusd is the abacusd under test.
	Abacusd time.Duration `json:"abacusd_ns"`
	// Postgres is the PostgreSQL cluster: the postmaster and every backend.
	Postgres time.Duration `json:"postgres_ns"`
	// Bench is this process, which runs the Kafka-protocol broker.
	Bench time.Duration `json:"bench_ns"`
	// Machine is the busy time of all CPUs, whoever used them; what the others above do not
	// account for is other work on the machine.
	Machine time.Duration `json:"machine_ns"`
}

// sub is the CPU time taken between an earlier snapshot and u.
func (u cpuUse) sub(earlier cpuUse) cpuUse {
	return cpuUse{
		Abacusd: u.Abacusd - earlier.Abacusd, Postgres: u.Postgres - earlier.Postgres,
		Bench: u.Bench - earlier.Bench, Machine: u.Machine - earlier.Machine,
	}
}

// others is the CPU time of the machine not taken by the processes u accounts for.
func (u cpuUse) others() time.Duration {
	return max(u.Machine-u.Abacusd-u.Postgres-u.Bench, 0)
}

// machineBusy is the busy time of all CPUs of the machine so far.
func machineBusy() (time.Duration, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineStat(stat)
}

// parseMachineStat reads the busy time of all CPUs from the text of /proc/stat: the first line,
// "cpu user nice system idle iowait irq softirq steal ...", all but idle and iowait.
func parseMachineStat(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat starts with %.64q, want the cpu line", line)
	}
	var busy int64
	for i, f := range fields[1:9] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc/stat cpu field %d is %q, want a number", i+1, f)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * clockTick, nil
}

// cpuMeter snapshots the CPU time abacusd, PostgreSQL and this process have taken so far.
type cpuMeter struct {
	abacusd    int // 0: none
	postmaster int
}

// snapshot reads the CPU times. PostgreSQL's is the postmaster's own, that of the children it
// waited for (backends that ended), and that of its live children; so the difference of two
// snapshots counts every backend's work between them, whether it ended or not.
func (m cpuMeter) snapshot() (cpuUse, error) {
	var u cpuUse
	var err error
	if u.Machine, err = machineBusy(); err != nil {
		return u, err
	}
	self, err := readProcStat("self")
	if err != nil {
		return u, err
	}
	u.Bench = self.cpu
	if m.abacusd > 0 {
		st, err := readProcStat(strconv.Itoa(m.abacusd))
		if err != nil {
			return u, fmt.Errorf("abacusd: %w", err)
		}
		u.Abacusd = st.cpu
	}
	pm, err := readProcStat(strconv.Itoa(m.postmaster))
	if err != nil {
		return u, fmt.Errorf("postmaster: %w", err)
	}
	u.Postgres = pm.cpu + pm.cpuChildren
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return u, err
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := readProcStat(e.Name())
		if err != nil {
			continue // ended since the directory was read
		}
		if st.ppid == m.postmaster {
			u.Postgres += st.cpu
		}
	}
	return u, nil
}

// newCPUMeter returns a meter of the stack's PostgreSQL, this process and, when abacusd is
// not 0, the process abacusd.
func newCPUMeter(stack *harness.Stack, abacusd int) (cpuMeter, error) {
	pm, err := postmasterPID(filepath.Join(stack.PostgresDir, "data"))
	if err != nil {
		return cpuMeter{}, fmt.Errorf("find the postmaster: %w", err)
	}
	return cpuMeter{abacusd: abacusd, postmaster: pm}, nil
}

// postmasterPID reads the PID of the postmaster of the cluster in dataDir (the first line of
// postmaster.pid).
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid starts with %q, want a PID", line)
	}
	return pid, nil
}
