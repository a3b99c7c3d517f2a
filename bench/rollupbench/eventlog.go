package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
)

// produceConcurrency is how many batches are being produced at once: enough to keep the
// broker busy while this process encodes the next ones.
const produceConcurrency = 8

// readTimeout bounds reading one partition back.
const readTimeout = 2 * time.Minute

// produced is what producing the workload wrote.
type produced struct {
	// Events, Duplicates and Late count the events produced; Events-Duplicates are distinct.
	Events, Duplicates, Late int64
	// Batches is the number of ProduceEncoded calls, one per batch.
	Batches int64
	// Elapsed is the time producing took.
	Elapsed time.Duration
	// End is the end offset of each partition of the topic after producing.
	End map[int32]int64
}

// produce writes the workload to eventlog.Topic with the event log's producer, exactly as
// ingest writes accepted batches (eventlog.EncodeEvents, then Producer.ProduceEncoded: the
// tenant as key and header, lz4 compression, acks=all on an idempotent producer), and returns
// the partitions' end offsets once every batch is acknowledged.
func produce(ctx context.Context, w workload, brokers []string, logger *slog.Logger) (*produced, error) {
	p, err := eventlog.NewProducer(eventlog.ProducerConfig{Brokers: brokers, ClientID: "abacus-rollupbench"}, logger, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = p.Close(context.WithoutCancel(ctx)) }()

	res := &produced{}
	started := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(produceConcurrency)
	for b := range w.batches() {
		res.Events += int64(len(b.Events))
		res.Duplicates += int64(b.Duplicates)
		res.Late += int64(b.Late)
		res.Batches++
		// Encoded here, one batch after the other: a duplicate shares its message with the
		// batch of the original, which is then never encoded at the same time.
		encoded, err := eventlog.EncodeEvents(&eventlogv1.Batch{TenantId: string(b.Tenant), Events: b.Events})
		if err != nil {
			return nil, errors.Join(err, g.Wait())
		}
		g.Go(func() error {
			if err := p.ProduceEncoded(gctx, b.Tenant, time.Now(), encoded); err != nil {
				return fmt.Errorf("produce a batch of %s: %w", b.Tenant, err)
			}
			return nil
		})
		if gctx.Err() != nil {
			break
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(started)
	if res.End, err = endOffsets(ctx, brokers); err != nil {
		return nil, err
	}
	return res, nil
}

// endOffsets returns the end offset of every partition of eventlog.Topic.
func endOffsets(ctx context.Context, brokers []string) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, eventlog.Topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	end := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	if len(end) == 0 {
		return nil, fmt.Errorf("list end offsets: topic %s has no partitions", eventlog.Topic)
	}
	return end, nil
}

// partitionsOf returns the partitions of end in order.
func partitionsOf(end map[int32]int64) []int32 {
	ps := make([]int32, 0, len(end))
	for p := range end {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// readPartition calls fn with every record of partition p of eventlog.Topic below offset end,
// in offset order.
func readPartition(ctx context.Context, brokers []string, p int32, end int64, fn func(*kgo.Record) error) error {
	if end == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{eventlog.Topic: {p: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	for next := int64(-1); next < end; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read partition %d: at offset %d of %d: %w", p, next, end, err)
		}
		var errs []error
		fetches.EachError(func(_ string, _ int32, err error) { errs = append(errs, err) })
		if len(errs) > 0 {
			return fmt.Errorf("read partition %d: %w", p, errors.Join(errs...))
		}
		var ferr error
		fetches.EachRecord(func(r *kgo.Record) {
			if ferr != nil || r.Offset >= end {
				return
			}
			ferr = fn(r)
			next = r.Offset + 1
		})
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// offsetIndex says how many events the records of each partition hold below an offset.
type offsetIndex struct {
	// marks of a partition, in offset order: the offset after a record, and the events of that
	// record and every earlier one.
	marks map[int32][]offsetMark
}

type offsetMark struct {
	next   int64
	events int64
}

func newOffsetIndex() *offsetIndex { return &offsetIndex{marks: make(map[int32][]offsetMark)} }

// add records that the record at offset of partition p holds events events. Records of a
// partition must be added in offset order.
func (x *offsetIndex) add(p int32, offset int64, events int) {
	m := x.marks[p]
	total := int64(events)
	if len(m) > 0 {
		total += m[len(m)-1].events
	}
	x.marks[p] = append(m, offsetMark{next: offset + 1, events: total})
}

// eventsBefore is the number of events in the records of partition p below offset next.
func (x *offsetIndex) eventsBefore(p int32, next int64) int64 {
	m := x.marks[p]
	i := sort.Search(len(m), func(i int) bool { return m[i].next > next })
	if i == 0 {
		return 0
	}
	return m[i-1].events
}

// eventsApplied is the number of events below the offsets of next, over all partitions.
func (x *offsetIndex) eventsApplied(next map[int32]int64) int64 {
	var n int64
	for p, o := range next {
		n += x.eventsBefore(p, o)
	}
	return n
}
