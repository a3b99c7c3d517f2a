package ingest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/tenancy"
)

// streamEnv serves the ingest service in process over bufconn. A tiny
// interceptor stands in for authentication: it puts the tenant into the
// context (the real interceptor chain is tested where it is built).
type streamEnv struct {
	*env
	client ingestv1.IngestServiceClient
	// ended receives the handler's result each time an IngestStream ends.
	ended chan error
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tenantStream) Context() context.Context { return s.ctx }

func newStreamEnv(t *testing.T, tenant tenancy.ID, edit func(*ingest.Config)) *streamEnv {
	t.Helper()
	e := &streamEnv{env: newEnv(t, edit), ended: make(chan error, 16)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			err := handler(srv, tenantStream{ss, tenancy.NewContext(ss.Context(), tenant)})
			e.ended <- err
			return err
		}))
	e.svc.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	e.client = ingestv1.NewIngestServiceClient(conn)
	return e
}

// recvAll reads responses until the server ends the stream, keyed by
// sequence; the stream must end with OK.
func recvAll(t *testing.T, stream grpc.BidiStreamingClient[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) map[uint64]*ingestv1.IngestStreamResponse {
	t.Helper()
	out := map[uint64]*ingestv1.IngestStreamResponse{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		require.NotContains(t, out, resp.GetSequence(), "one response per sequence")
		out[resp.GetSequence()] = resp
	}
}

func TestIngestStreamPipelinedBatches(t *testing.T) {
	t.Parallel()
	const inFlight = 2
	e := newStreamEnv(t, "acme", func(c *ingest.Config) { c.MaxInFlightPerStream = inFlight })
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)

	// More batches than may be in flight, sent without waiting; then EOF.
	const batches = 12
	for seq := range uint64(batches) {
		events := validEvents("s"+string(rune('a'+seq)), 4)
		events[2].EventId = "" // one bad event per batch
		require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 100 + seq, Events: events}))
	}
	require.NoError(t, stream.CloseSend())

	got := recvAll(t, stream)
	require.Len(t, got, batches, "every batch sent before EOF is answered")
	for seq := range uint64(batches) {
		resp := got[100+seq]
		require.NotNil(t, resp, "sequence %d", 100+seq)
		require.EqualValues(t, 3, resp.GetAccepted())
		require.Len(t, resp.GetRejected(), 1)
		require.EqualValues(t, 2, resp.GetRejected()[0].GetIndex())
		require.Equal(t, invalidEventID, resp.GetRejected()[0].GetReason())
	}
	require.NoError(t, <-e.ended)
	require.LessOrEqual(t, e.producer.maxInFlight.Load(), int64(inFlight))
	require.Len(t, written(t, e.kafka, "acme"), batches*3)
}

func TestIngestStreamSurvivesBadBatches(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "acme", nil)
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)

	// One at a time, so each answer is known to come from a live stream.
	roundTrip := func(req *ingestv1.IngestStreamRequest) *ingestv1.IngestStreamResponse {
		t.Helper()
		require.NoError(t, stream.Send(req))
		resp, err := stream.Recv()
		require.NoError(t, err)
		require.Equal(t, req.GetSequence(), resp.GetSequence())
		return resp
	}

	empty := roundTrip(&ingestv1.IngestStreamRequest{Sequence: 1})
	require.Zero(t, empty.GetAccepted())
	require.Empty(t, empty.GetRejected())

	huge := roundTrip(&ingestv1.IngestStreamRequest{Sequence: 2, Events: validEvents("huge", 10001)})
	require.Zero(t, huge.GetAccepted())
	require.Len(t, huge.GetRejected(), 10001)
	for i, r := range huge.GetRejected() {
		require.EqualValues(t, i, r.GetIndex())
		require.Equal(t, batchTooLarge, r.GetReason())
	}
	require.Contains(t, huge.GetRejected()[0].GetMessage(), "batch has 10001 events, limit 10000")

	allBad := validEvents("bad", 2)
	allBad[0].Type, allBad[1].Timestamp = "", nil
	bad := roundTrip(&ingestv1.IngestStreamRequest{Sequence: 3, Events: allBad})
	require.Zero(t, bad.GetAccepted())
	require.Len(t, bad.GetRejected(), 2)

	good := roundTrip(&ingestv1.IngestStreamRequest{Sequence: 4, Events: validEvents("good", 3)})
	require.EqualValues(t, 3, good.GetAccepted())

	require.NoError(t, stream.CloseSend())
	require.Empty(t, recvAll(t, stream))
	require.NoError(t, <-e.ended)
	require.Len(t, written(t, e.kafka, "acme"), 3)
}

// TestIngestStreamWhenKafkaIsUnavailable: a batch whose write fails is
// answered with UNAVAILABLE verdicts (invalid events keep their reason), the
// stream stays open, and after recovery batches are accepted again.
func TestIngestStreamWhenKafkaIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "acme", func(c *ingest.Config) { c.ProduceTimeout = time.Second })
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 1, Events: validEvents("warm", 1)}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.GetAccepted())

	sw := hangProduce(t, e.kafka.Cluster())
	events := validEvents("down", 3)
	events[1].EventId = "bad id"
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 2, Events: events}))
	resp, err = stream.Recv()
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.GetSequence())
	require.Zero(t, resp.GetAccepted())
	require.Len(t, resp.GetRejected(), 3)
	for i, r := range resp.GetRejected() {
		require.EqualValues(t, i, r.GetIndex())
		require.Equal(t, events[i].GetEventId(), r.GetEventId())
		if i == 1 {
			require.Equal(t, invalidEventID, r.GetReason())
			require.Nil(t, r.GetRetryAfter())
			continue
		}
		require.Equal(t, unavailable, r.GetReason())
		require.Equal(t, time.Second, r.GetRetryAfter().AsDuration())
		require.Contains(t, r.GetMessage(), "retry")
	}

	sw.heal()
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 3, Events: validEvents("up", 2)}))
	resp, err = stream.Recv()
	require.NoError(t, err)
	require.EqualValues(t, 3, resp.GetSequence())
	require.EqualValues(t, 2, resp.GetAccepted())
	require.NoError(t, stream.CloseSend())
	require.Empty(t, recvAll(t, stream))
	got := written(t, e.kafka, "acme")
	require.Contains(t, got, "up-0")
	require.Contains(t, got, "up-1")
}

// TestIngestStreamClientCancel: canceling the client ends the stream on the
// server even with a batch stuck waiting for the broker.
func TestIngestStreamClientCancel(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "acme", func(c *ingest.Config) { c.ProduceTimeout = time.Hour }) // only the cancel ends the wait
	hangProduce(t, e.kafka.Cluster())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := e.client.IngestStream(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 1, Events: validEvents("stuck", 1)}))
	require.Eventually(t, func() bool { return e.producer.inFlight.Load() == 1 }, afterDeadline, 10*time.Millisecond)

	cancel()
	_, err = stream.Recv()
	require.Equal(t, codes.Canceled, status.Code(err))
	select {
	case err := <-e.ended:
		require.Equal(t, codes.Canceled, status.Code(err))
	case <-time.After(afterDeadline):
		t.Fatal("the server did not end the canceled stream")
	}
	require.Eventually(t, func() bool { return e.producer.inFlight.Load() == 0 }, afterDeadline, 10*time.Millisecond,
		"the batch in flight was abandoned")
}

// TestIngestStreamDrain: when the server stops, an open stream answers the
// batch it is processing and ends with UNAVAILABLE, so that its client
// reconnects.
func TestIngestStreamDrain(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "acme", nil)
	sw := hangProduce(t, e.kafka.Cluster())
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 7, Events: validEvents("drain", 2)}))
	require.Eventually(t, func() bool { return e.producer.inFlight.Load() == 1 }, afterDeadline, 10*time.Millisecond)

	e.svc.Drain()
	sw.heal()
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.EqualValues(t, 7, resp.GetSequence())
	require.EqualValues(t, 2, resp.GetAccepted(), "the batch in flight is answered")
	_, err = stream.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "shutting down")

	// New streams end at once too.
	again, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)
	_, err = again.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err))
}

// TestIngestStreamStopsReadingAtTheInFlightLimit: with the broker stuck, a
// client that keeps sending gets at most MaxInFlightPerStream batches into
// the server's hands.
func TestIngestStreamStopsReadingAtTheInFlightLimit(t *testing.T) {
	t.Parallel()
	const inFlight = 3
	e := newStreamEnv(t, "acme", func(c *ingest.Config) {
		c.MaxInFlightPerStream = inFlight
		c.ProduceTimeout = time.Hour // only healing the broker frees a slot
	})
	sw := hangProduce(t, e.kafka.Cluster())
	stream, err := e.client.IngestStream(t.Context())
	require.NoError(t, err)
	const batches = 10
	var sent atomic.Int64
	go func() {
		for seq := range uint64(batches) {
			if stream.Send(&ingestv1.IngestStreamRequest{Sequence: seq, Events: validEvents("f"+string(rune('a'+seq)), 1)}) != nil {
				return
			}
			sent.Add(1)
		}
		_ = stream.CloseSend()
	}()
	require.Eventually(t, func() bool { return e.producer.inFlight.Load() == inFlight }, afterDeadline, 10*time.Millisecond)
	require.Equal(t, int64(inFlight), e.producer.calls.Load(), "no batch beyond the limit was taken")

	sw.heal()
	got := recvAll(t, stream)
	require.Len(t, got, batches)
	require.EqualValues(t, batches, sent.Load())
	require.LessOrEqual(t, e.producer.maxInFlight.Load(), int64(inFlight))
	require.NoError(t, <-e.ended)
}

func TestIngestStreamNeedsAnAuthenticatedTenant(t *testing.T) {
	t.Parallel()
	svc, err := ingest.New(ingest.Config{}, &countingProducer{}, nil, nil)
	require.NoError(t, err)
	err = svc.IngestStream(fakeStream{ctx: t.Context()})
	require.ErrorIs(t, err, tenancy.ErrNoTenant)
}

type fakeStream struct {
	grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
