package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// The targets of the ingest path, reported next to the figures and never asserted.
const (
	targetEventsPerSecond = 500_000
	targetShareOfBare     = 0.6
	targetHalfRateP99     = 50 * time.Millisecond
	targetRSSBytes        = 512 << 20
)

// Result is everything one benchmark run measured.
type Result struct {
	RunID    string          `json:"run_id"`
	Started  time.Time       `json:"started"`
	Machine  harness.Machine `json:"machine"`
	Settings Settings        `json:"settings"`
	// Kafka says what the broker did with the records.
	Kafka string `json:"kafka"`
	// Bare, Max and Half are the load generator's reports of the three phases (nil when the
	// phase did not run). Bare is the best of BareRuns.
	Bare     *loadgen.Report   `json:"bare,omitempty"`
	BareRuns []*loadgen.Report `json:"bare_runs,omitempty"`
	Max      *loadgen.Report   `json:"max,omitempty"`
	Half     *loadgen.Report   `json:"half,omitempty"`
	// HalfRate is the target rate of phase half: half of what abacusd accepted in phase max.
	HalfRate float64          `json:"half_rate"`
	RSS      RSS              `json:"abacusd_rss"`
	Targets  []harness.Target `json:"targets"`
}

var _ harness.Result = (*Result)(nil)

// Settings are the benchmark's parameters.
type Settings struct {
	PhaseDuration time.Duration `json:"phase_duration_ns"`
	Warmup        time.Duration `json:"warmup_ns"`
	Tenants       int           `json:"tenants"`
	ZipfS         float64       `json:"zipf_s"`
	BatchSize     int           `json:"batch_size"`
	Streams       int           `json:"streams"`
	InFlight      int           `json:"in_flight"`
	BareRuns      int           `json:"bare_runs"`
}

// RSS is abacusd's resident memory, in bytes.
type RSS struct {
	// HWM is VmHWM at the end: the largest resident set since abacusd started.
	HWM int64 `json:"hwm_bytes"`
	// Peak, PeakMax and PeakHalf are the largest VmRSS sampled every 100 ms: over the whole
	// run, in phase max, in phase half.
	Peak     int64 `json:"peak_bytes"`
	PeakMax  int64 `json:"peak_max_bytes"`
	PeakHalf int64 `json:"peak_half_bytes"`
}

// max is the largest resident set seen: the kernel updates VmHWM lazily, so a sample can
// exceed it by a little.
func (r RSS) max() int64 { return max(r.HWM, r.Peak) }

// Names of the targets.
const (
	targetNameRate  = "abacusd accepted events/s"
	targetNameShare = "abacusd / bare"
	targetNameP99   = "batch-ack p99 at half rate (ms)"
	targetNameRSS   = "abacusd peak RSS (MiB)"
)

func newResult(cfg Config, runID string) *Result {
	return &Result{
		RunID:   runID,
		Started: time.Now().UTC(),
		Machine: harness.ThisMachine(),
		Settings: Settings{
			PhaseDuration: cfg.Duration, Warmup: cfg.Warmup, Tenants: cfg.Tenants, ZipfS: cfg.ZipfS,
			BatchSize: cfg.BatchSize, Streams: cfg.Streams, InFlight: cfg.InFlight, BareRuns: cfg.BareRuns,
		},
		Kafka: "in-process kfake broker in the benchmark's process: produce requests acknowledged (acks=all), records not stored (BlackholeProduce)",
	}
}

// addBare records a run of the bare phase; the one that accepted most becomes Bare.
func (r *Result) addBare(rep *loadgen.Report) {
	r.BareRuns = append(r.BareRuns, rep)
	if r.Bare == nil || rep.AcceptedPerSecond > r.Bare.AcceptedPerSecond {
		r.Bare = rep
	}
}

// Evaluate sets Targets from the figures of the phases that ran.
func (r *Result) Evaluate() {
	rate := harness.Target{Name: targetNameRate, Goal: "≥ 500,000"}
	share := harness.Target{Name: targetNameShare, Goal: "≥ 0.60"}
	p99 := harness.Target{Name: targetNameP99, Goal: "< 50 ms"}
	rss := harness.Target{Name: targetNameRSS, Goal: "≤ 512 MiB"}
	if r.Max != nil {
		rate.Measured, rate.Value = true, r.Max.AcceptedPerSecond
		rate.Met = rate.Value >= targetEventsPerSecond
		if r.Bare != nil && r.Bare.AcceptedPerSecond > 0 {
			share.Measured, share.Value = true, r.Max.AcceptedPerSecond/r.Bare.AcceptedPerSecond
			share.Met = share.Value >= targetShareOfBare
		}
	}
	if r.Half != nil && r.Half.Latency.Count > 0 {
		p99.Measured, p99.Value = true, harness.Millis(r.Half.Latency.P99)
		p99.Met = r.Half.Latency.P99 < targetHalfRateP99
	}
	if peak := r.RSS.max(); peak > 0 {
		rss.Measured, rss.Value = true, float64(peak)/(1<<20)
		rss.Met = peak <= targetRSSBytes
	}
	r.Targets = []harness.Target{rate, share, p99, rss}
}

func (r *Result) target(name string) harness.Target { return harness.FindTarget(r.Targets, name) }

// WriteTable prints the results for people: one row per figure, its target and the verdict.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	streams := "2 × GOMAXPROCS"
	if r.Settings.Streams > 0 {
		streams = fmt.Sprint(r.Settings.Streams)
	}
	fmt.Fprintf(&b, "Abacus ingest benchmark %s — %d CPUs, %s/%s, %s\n", r.RunID, r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.GoVersion)
	fmt.Fprintf(&b, "%d tenants (Zipf s=%g), batches of %d, %s streams × %d in flight; each phase %s with %s warmup\n",
		r.Settings.Tenants, r.Settings.ZipfS, r.Settings.BatchSize, streams, r.Settings.InFlight, r.Settings.PhaseDuration, r.Settings.Warmup)
	fmt.Fprintf(&b, "Kafka: %s\n\n", r.Kafka)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}

	t := harness.NewTable()
	perSecond := func(rep *loadgen.Report) string {
		if rep == nil {
			return "not run"
		}
		return harness.GroupInt(int64(rep.AcceptedPerSecond))
	}
	lat := func(rep *loadgen.Report) string {
		if rep == nil || rep.Latency.Count == 0 {
			return "not run"
		}
		return fmt.Sprintf("%.1f / %.1f ms", harness.Millis(rep.Latency.P50), harness.Millis(rep.Latency.P99))
	}

	t.Row("accepted events/s, bare-decode (best run)", perSecond(r.Bare))
	if len(r.BareRuns) > 1 {
		runs := make([]string, len(r.BareRuns))
		for i, rep := range r.BareRuns {
			runs[i] = harness.GroupInt(int64(rep.AcceptedPerSecond))
		}
		t.Row("  bare-decode runs", strings.Join(runs, ", "))
	}
	t.TargetRow("accepted events/s, abacusd", perSecond(r.Max), r.target(targetNameRate))
	share := "not measured"
	if st := r.target(targetNameShare); st.Measured {
		share = fmt.Sprintf("%.2f", st.Value)
	}
	t.TargetRow("abacusd / bare", share, r.target(targetNameShare))
	t.Row("batch-ack p50 / p99, bare (best run)", lat(r.Bare))
	t.Row("batch-ack p50 / p99, abacusd at max rate", lat(r.Max))
	t.TargetRow("batch-ack p50 / p99, abacusd at half rate", lat(r.Half), r.target(targetNameP99))
	if r.Half != nil {
		t.Row("  half rate: target / achieved events/s", fmt.Sprintf("%s / %s", harness.GroupInt(int64(r.HalfRate)), harness.GroupInt(int64(r.Half.AcceptedPerSecond))))
	}
	rss := "not measured"
	if r.RSS.max() > 0 {
		rss = mib(r.RSS.max())
	}
	t.TargetRow("abacusd peak RSS (VmHWM, samples)", rss, r.target(targetNameRSS))
	t.Row("  peak VmRSS sampled / 100 ms: max, half", fmt.Sprintf("%s, %s", mib(r.RSS.PeakMax), mib(r.RSS.PeakHalf)))
	for _, p := range []struct {
		name string
		rep  *loadgen.Report
	}{{"bare", r.Bare}, {"max", r.Max}, {"half", r.Half}} {
		if p.rep == nil {
			continue
		}
		c := p.rep.Measured
		t.Row("  "+p.name+": rejected / unanswered / stream errors", fmt.Sprintf("%s / %s / %d", harness.GroupInt(c.Rejected), harness.GroupInt(c.Unanswered), sum(p.rep.StreamErrors)))
	}
	_, err := t.WriteTo(w)
	return err
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
