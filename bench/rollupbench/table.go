package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/bench/loadgen"
)

// The targets of the rollup, reported next to the figures and never asserted.
const (
	targetConsumerRate = 150_000
	targetShareIndexed = 0.6
	targetFreshnessP99 = 500 * time.Millisecond
	// The freshness figure counts only under this background load and with this many probes.
	minBackgroundRate = 50_000
	minProbes         = 200
)

// Names of the targets.
const (
	targetNameConsumer   = "consumer events/s"
	targetNameShare      = "consumer / indexed raw COPY"
	targetNameCheck      = "rollups_1m event_count = distinct events produced"
	targetNameFreshness  = "ack to visible p99 (ms)"
	targetNameBackground = "background accepted events/s"
)

// Result is everything one benchmark run measured. Phases that did not run are nil.
type Result struct {
	RunID    string          `json:"run_id"`
	Started  time.Time       `json:"started"`
	Machine  harness.Machine `json:"machine"`
	Settings Settings        `json:"settings"`
	// Kafka and Postgres say how the dependencies ran.
	Kafka    string `json:"kafka"`
	Postgres string `json:"postgres"`

	Workload  *workloadStats   `json:"workload,omitempty"`
	Consumer  *consumerResult  `json:"consumer,omitempty"`
	Copy      *copyResult      `json:"raw_copy,omitempty"`
	Check     *check           `json:"check,omitempty"`
	Freshness *freshnessResult `json:"freshness,omitempty"`
	Targets   []harness.Target `json:"targets"`
}

var _ harness.Result = (*Result)(nil)

// Settings are the benchmark's parameters.
type Settings struct {
	Events            int           `json:"events"`
	Tenants           int           `json:"tenants"`
	TenantZipfS       float64       `json:"tenant_zipf_s"`
	Users             int           `json:"users_per_tenant"`
	UserZipfS         float64       `json:"user_zipf_s"`
	BatchSize         int           `json:"batch_size"`
	Partitions        int           `json:"partitions"`
	Span              time.Duration `json:"span_ns"`
	Seed              uint64        `json:"seed"`
	FreshnessDuration time.Duration `json:"freshness_duration_ns"`
	FreshnessWarmup   time.Duration `json:"freshness_warmup_ns"`
	BackgroundRate    float64       `json:"background_rate"`
	BackgroundTenants int           `json:"background_tenants"`
	ProbeInterval     time.Duration `json:"probe_interval_ns"`
	ProbePoll         time.Duration `json:"probe_poll_ns"`
	ProbeTimeout      time.Duration `json:"probe_timeout_ns"`
}

// workloadStats is what was produced for the consumer.
type workloadStats struct {
	Events     int64 `json:"events"`
	Distinct   int64 `json:"distinct"`
	Duplicates int64 `json:"duplicates"`
	Late       int64 `json:"late"`
	Batches    int64 `json:"batches"`
	// Records is the records on the topic; RecordsPerPartition by partition.
	Records             int64           `json:"records"`
	RecordsPerPartition map[int32]int64 `json:"records_per_partition"`
	Elapsed             time.Duration   `json:"produce_elapsed_ns"`
}

func newWorkloadStats(p *produced) *workloadStats {
	s := &workloadStats{
		Events: p.Events, Distinct: p.Events - p.Duplicates, Duplicates: p.Duplicates, Late: p.Late,
		Batches: p.Batches, RecordsPerPartition: p.End, Elapsed: p.Elapsed,
	}
	for _, n := range p.End {
		s.Records += n
	}
	return s
}

// check compares the rollups with what was produced.
type check struct {
	// RolledUp is the sum of rollups_1m.event_count of the workload's tenants.
	RolledUp int64 `json:"rolled_up"`
	// Distinct is the number of distinct (tenant, event_id) produced.
	Distinct int64 `json:"distinct"`
}

func newResult(cfg Config, runID string) *Result {
	return &Result{
		RunID:   runID,
		Started: time.Now().UTC(),
		Machine: harness.ThisMachine(),
		Settings: Settings{
			Events: cfg.Events, Tenants: cfg.Tenants, TenantZipfS: cfg.TenantZipfS, Users: cfg.Users, UserZipfS: cfg.UserZipfS,
			BatchSize: cfg.BatchSize, Partitions: cfg.Partitions, Span: cfg.Span, Seed: cfg.Seed,
			FreshnessDuration: cfg.FreshnessDuration, FreshnessWarmup: cfg.FreshnessWarmup,
			BackgroundRate: cfg.BackgroundRate, BackgroundTenants: cfg.BackgroundTenants,
			ProbeInterval: cfg.ProbeInterval, ProbePoll: cfg.ProbePoll, ProbeTimeout: cfg.ProbeTimeout,
		},
		Kafka: "in-process kfake broker in the benchmark's process, storing the records",
	}
}

// Evaluate sets Targets from the figures of the phases that ran.
func (r *Result) Evaluate() {
	consumer := harness.Target{Name: targetNameConsumer, Goal: "≥ 150,000"}
	share := harness.Target{Name: targetNameShare, Goal: "≥ 0.60"}
	chk := harness.Target{Name: targetNameCheck, Goal: "equal"}
	fresh := harness.Target{Name: targetNameFreshness, Goal: "p99 ≤ 500 ms"}
	background := harness.Target{Name: targetNameBackground, Goal: "≥ 50,000"}
	if c := r.Consumer; c != nil {
		consumer.Measured, consumer.Value = true, c.EventsPerSecond
		consumer.Met = c.EventsPerSecond >= targetConsumerRate
		if r.Copy != nil && r.Copy.Indexed.EventsPerSecond > 0 {
			share.Measured, share.Value = true, c.EventsPerSecond/r.Copy.Indexed.EventsPerSecond
			share.Met = share.Value >= targetShareIndexed
		}
	}
	if c := r.Check; c != nil {
		chk.Measured, chk.Value, chk.Met = true, float64(c.RolledUp), c.RolledUp == c.Distinct
	}
	if f := r.Freshness; f != nil {
		if f.Background != nil {
			background.Measured, background.Value = true, f.Background.AcceptedPerSecond
			background.Met = f.Background.AcceptedPerSecond >= minBackgroundRate
		}
		if f.AckToVisible.Count > 0 {
			fresh.Measured, fresh.Value = true, harness.Millis(f.AckToVisible.P99)
			fresh.Met = f.AckToVisible.P99 <= targetFreshnessP99
			if fresh.Met {
				fresh.Note = freshnessNote(f, background)
			}
		}
	}
	r.Targets = []harness.Target{consumer, share, chk, fresh, background}
}

// freshnessNote says why a freshness figure that meets its target does not count, or "". A
// figure that misses it is not met, whatever the conditions.
func freshnessNote(f *freshnessResult, background harness.Target) string {
	var why []string
	if !background.Met {
		why = append(why, fmt.Sprintf("background below %s ev/s", harness.GroupInt(minBackgroundRate)))
	}
	if f.AckToVisible.Count < minProbes {
		why = append(why, fmt.Sprintf("%d probes, fewer than %d", f.AckToVisible.Count, minProbes))
	}
	if f.Failed > 0 {
		why = append(why, fmt.Sprintf("%d probes failed", f.Failed))
	}
	if f.PollErrors > 0 {
		why = append(why, fmt.Sprintf("%d GetTimeSeries calls failed", f.PollErrors))
	}
	if len(why) == 0 {
		return ""
	}
	return "not counted: " + strings.Join(why, "; ")
}

func (r *Result) target(name string) harness.Target { return harness.FindTarget(r.Targets, name) }

// WriteTable prints the results for people: one row per figure, its target and the verdict.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "Abacus rollup benchmark %s — %d CPUs, %s/%s, %s\n", r.RunID, r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.GoVersion)
	if wl := r.Workload; wl != nil {
		fmt.Fprintf(&b, "Workload: %s events (%s duplicates, %s late), %d tenants (Zipf s=%g), %s users each (Zipf s=%g), batches of %d: %s records in %d partitions\n",
			harness.GroupInt(wl.Events), harness.GroupInt(wl.Duplicates), harness.GroupInt(wl.Late), s.Tenants, s.TenantZipfS,
			harness.GroupInt(int64(s.Users)), s.UserZipfS, s.BatchSize, harness.GroupInt(wl.Records), s.Partitions)
	}
	fmt.Fprintf(&b, "Freshness: %s background load, probes every %s polling every %s\n", r.Settings.FreshnessDuration, s.ProbeInterval, s.ProbePoll)
	fmt.Fprintf(&b, "Kafka: %s\nPostgreSQL: %s\n\n", r.Kafka, r.Postgres)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}

	t := harness.NewTable()
	perSecond := func(v float64) string { return harness.GroupInt(int64(v)) }
	notRun := "not run"
	if c := r.Consumer; c != nil {
		t.TargetRow("consumer events/s, first commit → all applied", perSecond(c.EventsPerSecond), r.target(targetNameConsumer))
		t.Row("  window: events / time / transactions", fmt.Sprintf("%s / %s / %d", harness.GroupInt(c.WindowEvents), seconds(c.Window), c.Transactions))
		t.Row("  abacusd start → first commit", seconds(c.StartToFirstCommit))
		t.Row("  CPU in the window: abacusd / PostgreSQL / broker / other work", fmt.Sprintf("%s / %s / %s / %s of %s × %d CPUs",
			seconds(c.CPU.Abacusd), seconds(c.CPU.Postgres), seconds(c.CPU.Bench), seconds(c.CPU.others()), seconds(c.Window), r.Machine.CPUs))
	} else {
		t.TargetRow("consumer events/s, first commit → all applied", notRun, r.target(targetNameConsumer))
	}
	if cp := r.Copy; cp != nil {
		t.Row("raw COPY events/s, copy of events with its index", perSecond(cp.Indexed.EventsPerSecond))
		t.TargetRow("consumer / indexed raw COPY", ratio(r.target(targetNameShare)), r.target(targetNameShare))
		t.Row("raw COPY events/s, copy of events without indexes", perSecond(cp.Plain.EventsPerSecond))
		if r.Consumer != nil && cp.Plain.EventsPerSecond > 0 {
			t.Row("consumer / unindexed raw COPY (no target)", fmt.Sprintf("%.2f", r.Consumer.EventsPerSecond/cp.Plain.EventsPerSecond))
			t.Row("  PostgreSQL CPU per 1M events: consumer / COPY indexed / unindexed", fmt.Sprintf("%s / %s / %s",
				perMillion(r.Consumer.CPU.Postgres, r.Consumer.WindowEvents), perMillion(cp.Indexed.PostgresCPU, cp.Indexed.Rows),
				perMillion(cp.Plain.PostgresCPU, cp.Plain.Rows)))
		}
	} else {
		t.TargetRow("consumer / indexed raw COPY", notRun, r.target(targetNameShare))
	}
	if c := r.Check; c != nil {
		t.TargetRow("rollups_1m event_count / distinct events produced", fmt.Sprintf("%s / %s", harness.GroupInt(c.RolledUp), harness.GroupInt(c.Distinct)), r.target(targetNameCheck))
	} else {
		t.TargetRow("rollups_1m event_count / distinct events produced", notRun, r.target(targetNameCheck))
	}
	writeFreshness(t, r)
	_, err := t.WriteTo(w)
	return err
}

// writeFreshness adds the rows of the freshness phase.
func writeFreshness(t *harness.Table, r *Result) {
	f := r.Freshness
	if f == nil {
		t.TargetRow("ack → visible p50 / p90 / p99 / max", "not run", r.target(targetNameFreshness))
		t.TargetRow("background accepted events/s", "not run", r.target(targetNameBackground))
		return
	}
	l := f.AckToVisible
	measured := "no probe became visible"
	if l.Count > 0 {
		measured = fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ms", harness.Millis(l.P50), harness.Millis(l.P90), harness.Millis(l.P99), harness.Millis(l.Max))
	}
	t.TargetRow("ack → visible p50 / p90 / p99 / max", measured, r.target(targetNameFreshness))
	t.Row(fmt.Sprintf("  probes: sent / timed out (counted as %s) / failed", r.Settings.ProbeTimeout),
		fmt.Sprintf("%d / %d / %d", f.Probes, f.TimedOut, f.Failed))
	t.Row("  GetTimeSeries calls / failed", fmt.Sprintf("%s / %d", harness.GroupInt(int64(f.Polls)), f.PollErrors))
	t.Row("  rollup committed events/s while probing / lag at the end", fmt.Sprintf("%s / %s records",
		harness.GroupInt(int64(f.RolledUpPerSecond)), harness.GroupInt(f.LagRecords)))
	t.Row("  machine CPU busy while probing (all processes)", fmt.Sprintf("%.0f %%", 100*f.MachineBusy))
	if f.IngestCall.Count > 0 {
		t.Row("  probe Ingest call p50 / p99", fmt.Sprintf("%.1f / %.1f ms", harness.Millis(f.IngestCall.P50), harness.Millis(f.IngestCall.P99)))
	}
	bg := f.Background
	name := fmt.Sprintf("background accepted events/s (asked %s)", harness.GroupInt(int64(r.Settings.BackgroundRate)))
	if bg == nil {
		t.TargetRow(name, "not run", r.target(targetNameBackground))
		return
	}
	t.TargetRow(name, harness.GroupInt(int64(bg.AcceptedPerSecond)), r.target(targetNameBackground))
	t.Row("  background: rejected / unanswered / stream errors", fmt.Sprintf("%s / %s / %d",
		harness.GroupInt(bg.Measured.Rejected), harness.GroupInt(bg.Measured.Unanswered), streamErrors(bg)))
}

func streamErrors(rep *loadgen.Report) int64 {
	var n int64
	for _, v := range rep.StreamErrors {
		n += v
	}
	return n
}

func ratio(t harness.Target) string {
	if !t.Measured {
		return "not measured"
	}
	return fmt.Sprintf("%.2f", t.Value)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// perMillion is d scaled to a million of n.
func perMillion(d time.Duration, n int64) string {
	if n <= 0 {
		return "-"
	}
	return seconds(time.Duration(float64(d) * 1e6 / float64(n)))
}
