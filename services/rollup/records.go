package rollup

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Headers the consumer adds to a record it sends to [eventlog.DeadLetterTopic].
// The original key, value and headers are kept, so an operator can inspect
// the record and, once the cause is fixed, produce it to [eventlog.Topic]
// again: deduplication makes that replay safe.
const (
	// HeaderDeadLetterReason says why the record was refused.
	HeaderDeadLetterReason = "abacus-dlq-reason"
	// HeaderSourceTopic, HeaderSourcePartition and HeaderSourceOffset (both
	// decimal) locate the original record.
	HeaderSourceTopic     = "abacus-source-topic"
	HeaderSourcePartition = "abacus-source-partition"
	HeaderSourceOffset    = "abacus-source-offset"
)

// maxReasonBytes bounds the reason header; decode errors can quote input.
const maxReasonBytes = 1024

// errInvalidEvent marks a record that decoded but holds an event the
// database would refuse. [postgres.DB.ApplyBatch] refuses a whole batch for
// one such event, so the record is set aside like an undecodable one.
var errInvalidEvent = errors.New("invalid event")

// topicPartition names a Kafka partition.
type topicPartition struct {
	topic     string
	partition int32
}

// poisonRecord is a record that cannot be applied, and why.
type poisonRecord struct {
	record *kgo.Record
	reason string
}

// pollBatch is one poll's records turned into database transactions.
type pollBatch struct {
	// chunks are applied in order, one transaction each. Usually there is
	// one; a poll holding more than Config.MaxBatchEvents events is split
	// so that no transaction grows without bound.
	chunks []*chunk
	// poison are the records that cannot be applied, in poll order.
	poison []poisonRecord
}

// chunk is one transaction's share of a poll: consecutive records, so the
// offsets of a partition only grow from chunk to chunk.
type chunk struct {
	batch postgres.Batch
	// records are the chunk's records, poison ones included.
	records []*kgo.Record
	// ok and poison count the chunk's applicable and poison records.
	ok, poison int
	// first is the lowest offset of each partition in the chunk.
	first map[topicPartition]int64
	// next is the offset after the chunk's last record of each partition.
	next map[topicPartition]int64
}

// splitLanes divides a poll's records into at most n lanes by partition:
// every record of a partition goes to the same lane, in poll order, and the
// partitions go, most records first, to the lane with the fewest records so
// far. Empty lanes are left out, so there is at least one lane for a poll of
// at least one record.
func splitLanes(records []*kgo.Record, n int) [][]*kgo.Record {
	byPartition := make(map[topicPartition][]*kgo.Record)
	var order []topicPartition
	for _, r := range records {
		tp := topicPartition{r.Topic, r.Partition}
		if _, seen := byPartition[tp]; !seen {
			order = append(order, tp)
		}
		byPartition[tp] = append(byPartition[tp], r)
	}
	n = max(1, min(n, len(order)))
	if n == 1 {
		return [][]*kgo.Record{records}
	}
	// Stable, so equal partitions keep poll order: lanes are deterministic.
	slices.SortStableFunc(order, func(a, b topicPartition) int {
		return cmp.Compare(len(byPartition[b]), len(byPartition[a]))
	})
	lanes := make([][]*kgo.Record, n)
	for _, tp := range order {
		least := 0
		for i := range lanes {
			if len(lanes[i]) < len(lanes[least]) {
				least = i
			}
		}
		lanes[least] = append(lanes[least], byPartition[tp]...)
	}
	return lanes
}

// newPollBatch decodes records (in poll order, so ascending offsets within a
// partition) into chunks of at most maxEvents events (a single record with
// more gets a chunk of its own) for group at generation. Records that cannot
// be applied become poison; their offsets still advance with their chunk, so
// they never block their partition.
func newPollBatch(group string, generation int32, records []*kgo.Record, maxEvents int) *pollBatch {
	pb := &pollBatch{}
	var cur *chunk
	var events []postgres.Event // scratch: one record's events
	for _, r := range records {
		var err error
		events, err = appendRecordEvents(events[:0], r)
		if err != nil {
			events = events[:0]
			pb.poison = append(pb.poison, poisonRecord{record: r, reason: reasonOf(err)})
		}
		if cur == nil || (len(cur.batch.Events) > 0 && len(cur.batch.Events)+len(events) > maxEvents) {
			cur = &chunk{
				batch: postgres.Batch{Group: group, Generation: generation},
				first: make(map[topicPartition]int64),
				next:  make(map[topicPartition]int64),
			}
			pb.chunks = append(pb.chunks, cur)
		}
		tp := topicPartition{r.Topic, r.Partition}
		if _, ok := cur.first[tp]; !ok {
			cur.first[tp] = r.Offset
		}
		cur.next[tp] = max(cur.next[tp], r.Offset+1)
		cur.records = append(cur.records, r)
		if err != nil {
			cur.poison++
			continue
		}
		cur.ok++
		cur.batch.Events = append(cur.batch.Events, events...)
	}
	for _, c := range pb.chunks {
		for tp, next := range c.next {
			c.batch.Offsets = append(c.batch.Offsets, postgres.PartitionOffset{
				Topic: tp.topic, Partition: tp.partition, NextOffset: next,
			})
		}
	}
	return pb
}

// rewindOffsets are the positions to fetch again from when chunks[i:] are
// not applied: the first record of every partition in them.
func (pb *pollBatch) rewindOffsets(i int) map[string]map[int32]kgo.EpochOffset {
	out := make(map[string]map[int32]kgo.EpochOffset)
	for _, c := range pb.chunks[i:] {
		for tp, first := range c.first {
			if out[tp.topic] == nil {
				out[tp.topic] = make(map[int32]kgo.EpochOffset)
			}
			if _, seen := out[tp.topic][tp.partition]; !seen { // earlier chunks hold earlier offsets
				out[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: first}
			}
		}
	}
	return out
}

// appendRecordEvents decodes r and appends its events to dst. Either every
// event of the record is appended or the error says why none should be.
func appendRecordEvents(dst []postgres.Event, r *kgo.Record) ([]postgres.Event, error) {
	tenant, b, err := eventlog.Decode(r)
	if err != nil {
		return dst, err
	}
	return appendBatchEvents(dst, tenant, b, r.Timestamp)
}

// appendBatchEvents converts the events of b, owned by tenant, to store
// events. The batch's received_time is the events' ReceivedAt; a batch
// without one (never written by ingest) falls back to recordTime, the
// producer's timestamp, which is the same moment give or take the produce.
func appendBatchEvents(dst []postgres.Event, tenant tenancy.ID, b *eventlogv1.Batch, recordTime time.Time) ([]postgres.Event, error) {
	n := len(dst)
	received := recordTime
	if rt := b.GetReceivedTime(); rt != nil {
		received = timeOf(rt)
	}
	for i, ev := range b.GetEvents() {
		e := postgres.Event{
			Tenant:     tenant,
			EventID:    ev.GetEventId(),
			Type:       ev.GetType(),
			UserID:     ev.GetUserId(),
			SessionID:  ev.GetSessionId(),
			Time:       timeOf(ev.GetTimestamp()),
			ReceivedAt: received,
			Properties: ev.GetProperties(),
		}
		// value has explicit presence: nil means "no value", which is not
		// the same as 0 for MIN/MAX/AVG. Copy it so the store holds no
		// pointer into the decoded message.
		if ev.Value != nil {
			v := *ev.Value
			e.Value = &v
		}
		if err := e.Validate(); err != nil {
			return dst[:n], fmt.Errorf("%w %d (event ID %.64q): %w", errInvalidEvent, i, e.EventID, err)
		}
		dst = append(dst, e)
	}
	return dst, nil
}

// timeOf converts ts, mapping absent or out-of-range timestamps to the zero
// time, which [postgres.Event.Validate] refuses. (timestamppb's AsTime maps
// nil to 1970, which would be counted in the wrong minute.)
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || ts.CheckValid() != nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// deadLetterRecord is r as it goes to the dead-letter topic: same key, value
// and headers (minus dead-letter headers of an earlier trip), plus the reason
// and the source position.
func deadLetterRecord(p poisonRecord) *kgo.Record {
	r := p.record
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDeadLetterReason, HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset:
			continue
		}
		headers = append(headers, h)
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDeadLetterReason, Value: []byte(p.reason)},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
	)
	return &kgo.Record{
		Topic:   eventlog.DeadLetterTopic,
		Key:     r.Key,
		Value:   r.Value,
		Headers: headers,
	}
}

// reasonOf is err's message, cut to maxReasonBytes of valid UTF-8.
func reasonOf(err error) string {
	s := err.Error()
	if len(s) > maxReasonBytes {
		s = strings.ToValidUTF8(s[:maxReasonBytes], "")
	}
	return s
}
