package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// summarize returns the mean and percentiles of ds (which it sorts), exact: the load
// generator's histograms are not needed for a few hundred values.
func summarize(ds []time.Duration) loadgen.Latency {
	slices.Sort(ds)
	if len(ds) == 0 {
		return loadgen.Latency{}
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return loadgen.Latency{
		Count: int64(len(ds)),
		Mean:  sum / time.Duration(len(ds)),
		P50:   percentile(ds, 50),
		P90:   percentile(ds, 90),
		P99:   percentile(ds, 99),
		P999:  percentile(ds, 99.9),
		Max:   ds[len(ds)-1],
	}
}

// percentile is the p-th percentile (0 < p ≤ 100) of sorted by the nearest-rank method: the
// smallest value that at least p % of the values do not exceed. It is always one of the
// values, never an interpolation.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// maxMetricsBytes bounds how much of a /metrics answer is read.
const maxMetricsBytes = 8 << 20

// parseMetrics reads the samples of a Prometheus text exposition whose names start with
// prefix, keyed by the name with its labels as written ("abacus_x_total{result=\"ok\"}").
// Comments and other metrics are skipped.
func parseMetrics(r io.Reader, prefix string) (map[string]float64, error) {
	out := make(map[string]float64)
	sc := bufio.NewScanner(io.LimitReader(r, maxMetricsBytes))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		// name{labels} value [timestamp]; label values may hold spaces, so split after '}'.
		rest := line
		key := ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			key, rest = line[:i+1], line[i+1:]
		}
		fields := strings.Fields(rest)
		if key == "" {
			if len(fields) < 2 {
				return nil, fmt.Errorf("metrics line %q: no value", line)
			}
			key, fields = fields[0], fields[1:]
		}
		if len(fields) < 1 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[key] = v
	}
	return out, sc.Err()
}
