package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/services/rollup"
)

// sampleInterval is how often the consumer's progress is read from consumer_offsets: a small
// fraction of one transaction (10,000 events, tens of milliseconds), and one short query.
const sampleInterval = 10 * time.Millisecond

// metricsTimeout bounds reading abacusd's /metrics.
const metricsTimeout = 10 * time.Second

// sqlConsumerOffsets reads the offsets the rollup consumer committed with its last
// transaction, per partition.
const sqlConsumerOffsets = `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2`

// offsetSample is the consumer's committed position at one moment.
type offsetSample struct {
	at   time.Time
	next map[int32]int64
}

// progressed reports whether any partition is past its first record.
func (s offsetSample) progressed() bool {
	for _, n := range s.next {
		if n > 0 {
			return true
		}
	}
	return false
}

// reached reports whether every partition of end is at its end.
func (s offsetSample) reached(end map[int32]int64) bool {
	for p, e := range end {
		if s.next[p] < e {
			return false
		}
	}
	return true
}

// consumerRun is what the consumer phase observed: the first sample that showed a committed
// transaction, the sample that showed everything applied, and the CPU time taken between them.
type consumerRun struct {
	started     time.Time
	first, last offsetSample
	cpu         cpuUse
	metrics     map[string]float64
}

// consumerResult is the consumer's throughput and what it took.
type consumerResult struct {
	// EventsPerSecond is WindowEvents over Window.
	EventsPerSecond float64 `json:"events_per_second"`
	// Window runs from the first sample that showed a committed transaction to the first that
	// showed every record applied; WindowEvents is the events of the records applied in it.
	Window       time.Duration `json:"window_ns"`
	WindowEvents int64         `json:"window_events"`
	// FirstCommitEvents were applied already when the window opened.
	FirstCommitEvents int64 `json:"first_commit_events"`
	// StartToFirstCommit is from starting abacusd to the window's opening.
	StartToFirstCommit time.Duration `json:"start_to_first_commit_ns"`
	// Transactions, Inserted and Duplicates are abacusd's own counts
	// (abacus_rollup_batch_seconds_count, abacus_rollup_events_total).
	Transactions int64 `json:"transactions"`
	Inserted     int64 `json:"inserted"`
	Duplicates   int64 `json:"duplicates"`
	// CPU is the CPU time taken in the window.
	CPU cpuUse `json:"cpu"`
}

// result computes the figures of the run; index maps offsets to events.
func (r *consumerRun) result(index *offsetIndex) consumerResult {
	res := consumerResult{
		Window:             r.last.at.Sub(r.first.at),
		FirstCommitEvents:  index.eventsApplied(r.first.next),
		StartToFirstCommit: r.first.at.Sub(r.started),
		Transactions:       int64(r.metrics["abacus_rollup_batch_seconds_count"]),
		Inserted:           int64(r.metrics[`abacus_rollup_events_total{result="inserted"}`]),
		Duplicates:         int64(r.metrics[`abacus_rollup_events_total{result="duplicate"}`]),
		CPU:                r.cpu,
	}
	res.WindowEvents = index.eventsApplied(r.last.next) - res.FirstCommitEvents
	if res.Window > 0 {
		res.EventsPerSecond = float64(res.WindowEvents) / res.Window.Seconds()
	}
	return res
}

// runConsumer starts `abacusd serve --roles=rollup` on the produced topic and follows its
// committed offsets in the database until every record up to end is applied, or timeout.
func runConsumer(ctx context.Context, cfg Config, stack *harness.Stack, env []string, end map[int32]int64, workDir string, logger *slog.Logger) (run *consumerRun, err error) {
	conn, err := pgx.Connect(ctx, stack.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	run = &consumerRun{started: time.Now()}
	abacusd, err := harness.StartAbacusd(ctx, cfg.Abacusd, "rollup", env, workDir)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, abacusd.Terminate(harness.StopGrace)) }()
	meter, err := newCPUMeter(stack, abacusd.Pid())
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.ConsumerTimeout)
	defer cancel()
	var firstCPU cpuUse
	for {
		s, err := sampleOffsets(ctx, conn)
		if err != nil {
			return nil, fmt.Errorf("follow the consumer: %w\n%s", err, abacusd.LogTail())
		}
		if run.first.at.IsZero() && s.progressed() {
			run.first = s
			if firstCPU, err = meter.snapshot(); err != nil {
				return nil, fmt.Errorf("measure CPU: %w", err)
			}
			logger.Info("consumer committed its first transaction", "after", s.at.Sub(run.started).Round(time.Millisecond))
		}
		if s.reached(end) {
			run.last = s
			lastCPU, err := meter.snapshot()
			if err != nil {
				return nil, fmt.Errorf("measure CPU: %w", err)
			}
			run.cpu = lastCPU.sub(firstCPU)
			break
		}
		if exited, werr := abacusd.Exited(); exited {
			return nil, fmt.Errorf("abacusd exited before it applied every record: %v\n%s", werr, abacusd.LogTail())
		}
		if err := harness.Sleep(ctx, sampleInterval); err != nil {
			return nil, fmt.Errorf("the consumer did not apply every record within %s: %w", cfg.ConsumerTimeout, err)
		}
	}
	if run.first.at.Equal(run.last.at) {
		return nil, errors.New("the consumer applied every record before a second sample: too few events to measure (raise --events)")
	}
	if run.metrics, err = scrapeMetrics(ctx, abacusd.HTTPAddr); err != nil {
		return nil, err
	}
	if n := harness.CountLogWarnings(abacusd.LogPath()); n > 0 {
		logger.Warn("abacusd logged warnings during the consumer phase", "lines", n, "log", abacusd.LogPath())
	}
	return run, nil
}

// sampleOffsets reads the consumer's committed offsets.
func sampleOffsets(ctx context.Context, conn *pgx.Conn) (offsetSample, error) {
	rows, err := conn.Query(ctx, sqlConsumerOffsets, rollup.DefaultGroup, eventlog.Topic)
	if err != nil {
		return offsetSample{}, err
	}
	s := offsetSample{next: make(map[int32]int64)}
	var (
		p    int32
		next int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		s.next[p] = next
		return nil
	}); err != nil {
		return offsetSample{}, err
	}
	s.at = time.Now()
	return s, nil
}

// scrapeMetrics reads abacusd's rollup metrics from its /metrics.
func scrapeMetrics(ctx context.Context, httpAddr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, metricsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("abacusd metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("abacusd metrics: %s", resp.Status)
	}
	m, err := parseMetrics(resp.Body, "abacus_rollup_")
	if err != nil {
		return nil, fmt.Errorf("abacusd metrics: %w", err)
	}
	return m, nil
}
