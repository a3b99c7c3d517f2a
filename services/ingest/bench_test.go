package ingest

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// benchBatch is a batch of n realistic events: a few properties, a user, a
// value on some.
func benchBatch(n int, now time.Time) *ingestv1.IngestStreamRequest {
	req := &ingestv1.IngestStreamRequest{Sequence: 1, Events: make([]*ingestv1.Event, n)}
	for i := range req.Events {
		ev := &ingestv1.Event{
			EventId:   fmt.Sprintf("bench-%016x", i),
			Type:      []string{"page_view", "click", "purchase", "signup"}[i%4],
			UserId:    fmt.Sprintf("user-%06d", i*7919%100000),
			SessionId: fmt.Sprintf("sess-%06d", i/10),
			Timestamp: timestamppb.New(now.Add(-time.Duration(i) * time.Millisecond)),
			Properties: map[string]string{
				"path":    "/pricing",
				"plan":    "pro",
				"country": "DE",
				"browser": "firefox",
			},
		}
		if i%3 == 0 {
			v := float64(i) * 1.5
			ev.Value = &v
		}
		req.Events[i] = ev
	}
	return req
}

// BenchmarkJudge is the per-event cost of the verdict logic alone.
func BenchmarkJudge(b *testing.B) {
	now := time.Now()
	svc, err := New(Config{Now: func() time.Time { return now }}, nopProducer{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := benchBatch(500, now)
	lim := tenancy.DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.judge(req.Events, now, &lim); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(req.Events))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkJudgeWire is the stream path: split the request and judge its
// events as received, ready to write.
func BenchmarkJudgeWire(b *testing.B) {
	now := time.Now()
	svc, err := New(Config{Now: func() time.Time { return now }}, nopProducer{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	wire, err := proto.Marshal(benchBatch(500, now))
	if err != nil {
		b.Fatal(err)
	}
	lim := tenancy.DefaultLimits()
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		_, events, err := parseStreamRequest(wire)
		if err != nil {
			b.Fatal(err)
		}
		v, err := svc.judgeWire(events, now, &lim)
		if err != nil {
			b.Fatal(err)
		}
		if len(v.accepted) != len(events) {
			b.Fatal("rejected events")
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeJudgeEncode is what unary Ingest does with a batch apart
// from the network and Kafka: decode the request, judge its events, encode
// the accepted ones. BenchmarkDecode alone is the bare-decode baseline.
func BenchmarkDecodeJudgeEncode(b *testing.B) {
	now := time.Now()
	svc, err := New(Config{Now: func() time.Time { return now }}, nopProducer{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	wire, err := proto.Marshal(benchBatch(500, now))
	if err != nil {
		b.Fatal(err)
	}
	lim := tenancy.DefaultLimits()
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		var req ingestv1.IngestStreamRequest
		if err := proto.Unmarshal(wire, &req); err != nil {
			b.Fatal(err)
		}
		v, err := svc.judge(req.Events, now, &lim)
		if err != nil {
			b.Fatal(err)
		}
		if len(v.accepted) != len(req.Events) {
			b.Fatal("rejected events")
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDecode(b *testing.B) {
	wire, err := proto.Marshal(benchBatch(500, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		var req ingestv1.IngestStreamRequest
		if err := proto.Unmarshal(wire, &req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}
