package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/bench/harness"
	"github.com/abacus-analytics/abacus/eventlog"
)

// The tables of the raw COPY baseline: copies of events with its index and without.
const (
	tableIndexed = "bench_copy_indexed"
	tablePlain   = "bench_copy_plain"
)

// copyColumns are the columns of events, in the order the rollup writes them.
var copyColumns = []string{"tenant_id", "event_id", "event_type", "user_id", "session_id",
	"event_time", "received_at", "properties", "value"}

// copyRun is the raw COPY of the workload into one table.
type copyRun struct {
	// Table is the table copied into and Definition how it was created.
	Table      string `json:"table"`
	Definition string `json:"definition"`
	// Rows were copied in Elapsed, the sum of the COPY statements' times.
	Rows            int64         `json:"rows"`
	Elapsed         time.Duration `json:"elapsed_ns"`
	EventsPerSecond float64       `json:"events_per_second"`
	// PostgresCPU is the CPU time the cluster took during the COPY statements.
	PostgresCPU time.Duration `json:"postgres_cpu_ns"`
}

// copyResult is the baseline: the same rows copied into both tables.
type copyResult struct {
	Indexed copyRun `json:"indexed"`
	Plain   copyRun `json:"unindexed"`
}

// copyBaseline reads the topic back, partition by partition, decoding each record as the
// consumer does, and copies each partition's rows with one pgx CopyFrom into a copy of events
// with its indexes and one into a copy without, timing only the COPY statements. The order of
// the two tables alternates by partition, so neither always runs on a warmer cache. It also
// returns the index from offsets to events of the records read.
func copyBaseline(ctx context.Context, stack *harness.Stack, end map[int32]int64, logger *slog.Logger) (*copyResult, *offsetIndex, error) {
	conn, err := pgx.Connect(ctx, stack.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	meter, err := newCPUMeter(stack, 0)
	if err != nil {
		return nil, nil, err
	}

	res := &copyResult{
		Indexed: copyRun{Table: tableIndexed, Definition: "(LIKE events INCLUDING ALL)"},
		Plain:   copyRun{Table: tablePlain, Definition: "(LIKE events INCLUDING DEFAULTS)"},
	}
	for _, r := range []*copyRun{&res.Indexed, &res.Plain} {
		if _, err := conn.Exec(ctx, "CREATE TABLE "+r.Table+" "+r.Definition); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", r.Table, err)
		}
	}
	defer func() {
		for _, r := range []*copyRun{&res.Indexed, &res.Plain} {
			if _, derr := conn.Exec(context.WithoutCancel(ctx), "DROP TABLE "+r.Table); derr != nil {
				logger.Warn("baseline table not dropped", "table", r.Table, "error", derr)
			}
		}
	}()

	brokers := stack.KafkaBrokers
	index := newOffsetIndex()
	seen := make(map[string]struct{})
	for i, p := range partitionsOf(end) {
		rows, err := partitionRows(ctx, brokers, p, end[p], index, seen)
		if err != nil {
			return nil, nil, err
		}
		order := []*copyRun{&res.Indexed, &res.Plain}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, r := range order {
			if err := timeCopy(ctx, conn, meter, r, rows); err != nil {
				return nil, nil, err
			}
		}
		logger.Debug("partition copied", "partition", p, "rows", len(rows))
	}
	for _, r := range []*copyRun{&res.Indexed, &res.Plain} {
		if r.Elapsed > 0 {
			r.EventsPerSecond = float64(r.Rows) / r.Elapsed.Seconds()
		}
	}
	return res, index, nil
}

// partitionRows reads partition p back and returns its events as rows of copyColumns, built
// the way the consumer builds them (the batch's received time for every event, the
// properties as a JSON object), and adds its records to index. An event whose (tenant,
// event ID) is in seen is left out, as the consumer stores it only once and the indexed
// copy's primary key refuses it; the others are added to seen.
func partitionRows(ctx context.Context, brokers []string, p int32, end int64, index *offsetIndex,
	seen map[string]struct{}) ([][]any, error) {
	var rows [][]any
	err := readPartition(ctx, brokers, p, end, func(r *kgo.Record) error {
		tenant, b, err := eventlog.Decode(r)
		if err != nil {
			return fmt.Errorf("partition %d offset %d: %w", p, r.Offset, err)
		}
		received := b.GetReceivedTime().AsTime()
		for _, ev := range b.GetEvents() {
			key := string(tenant) + "\x00" + ev.GetEventId()
			if _, dup := seen[key]; dup {
				continue
			}
			seen[key] = struct{}{}
			props, err := json.Marshal(ev.GetProperties())
			if err != nil {
				return err
			}
			rows = append(rows, []any{string(tenant), ev.GetEventId(), ev.GetType(), ev.GetUserId(), ev.GetSessionId(),
				ev.GetTimestamp().AsTime(), received, string(props), ev.Value})
		}
		index.add(p, r.Offset, len(b.GetEvents()))
		return nil
	})
	return rows, err
}

// timeCopy copies rows into r's table with one CopyFrom and adds its time, rows and the
// cluster's CPU time to r.
func timeCopy(ctx context.Context, conn *pgx.Conn, meter cpuMeter, r *copyRun, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	before, err := meter.snapshot()
	if err != nil {
		return fmt.Errorf("measure CPU: %w", err)
	}
	started := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{r.Table}, copyColumns, pgx.CopyFromRows(rows))
	elapsed := time.Since(started)
	if err != nil {
		return fmt.Errorf("copy into %s: %w", r.Table, err)
	}
	after, err := meter.snapshot()
	if err != nil {
		return fmt.Errorf("measure CPU: %w", err)
	}
	if n != int64(len(rows)) {
		return errors.New("copy into " + r.Table + ": fewer rows stored than sent")
	}
	r.Rows += n
	r.Elapsed += elapsed
	r.PostgresCPU += after.sub(before).Postgres
	return nil
}
