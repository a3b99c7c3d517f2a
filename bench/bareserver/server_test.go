package bareserver_test

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/abacus-analytics/abacus/bench/bareserver"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  bareserver.Config
		want []string
	}{
		{name: "defaults", cfg: bareserver.Config{}},
		{name: "explicit", cfg: bareserver.Config{MaxRecvMsgBytes: 1 << 20, MaxInFlightPerStream: 1}},
		{name: "every problem", cfg: bareserver.Config{MaxRecvMsgBytes: 10, MaxInFlightPerStream: -1}, want: []string{"max receive message bytes is 10", "max in flight per stream is -1"}},
		{name: "too large", cfg: bareserver.Config{MaxRecvMsgBytes: 1 << 30, MaxInFlightPerStream: 2000}, want: []string{"256 MiB", "1 to 1024"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func client(t *testing.T, cfg bareserver.Config) ingestv1.IngestServiceClient {
	t.Helper()
	srv, err := bareserver.NewServer(cfg)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return ingestv1.NewIngestServiceClient(conn)
}

func events(n int) []*ingestv1.Event {
	evs := make([]*ingestv1.Event, n)
	for i := range evs {
		evs[i] = &ingestv1.Event{EventId: "e", Type: "t"}
	}
	return evs
}

func TestIngestStream_AnswersEveryBatch(t *testing.T) {
	t.Parallel()
	for _, inFlight := range []int{1, 3, 8} {
		c := client(t, bareserver.Config{MaxInFlightPerStream: inFlight})
		stream, err := c.IngestStream(t.Context())
		require.NoError(t, err)
		const batches = 50
		for i := range batches {
			// Not even valid events: the baseline decodes and counts, nothing more.
			require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: uint64(i), Events: events(i + 1)}))
		}
		require.NoError(t, stream.CloseSend())
		got := map[uint64]int32{}
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			require.Empty(t, resp.GetRejected())
			_, dup := got[resp.GetSequence()]
			require.False(t, dup, "one answer per batch")
			got[resp.GetSequence()] = resp.GetAccepted()
		}
		require.Len(t, got, batches, "in flight %d: every batch is answered before the stream ends", inFlight)
		for seq, accepted := range got {
			require.Equal(t, int32(seq+1), accepted)
		}
	}
}

func TestIngest_AcceptsAll(t *testing.T) {
	t.Parallel()
	c := client(t, bareserver.Config{})
	resp, err := c.Ingest(t.Context(), &ingestv1.IngestRequest{Events: events(7)})
	require.NoError(t, err)
	require.Equal(t, int32(7), resp.GetAccepted())
}

func TestIngestStream_RefusesOversizedMessages(t *testing.T) {
	t.Parallel()
	c := client(t, bareserver.Config{MaxRecvMsgBytes: 1024})
	stream, err := c.IngestStream(t.Context())
	require.NoError(t, err)
	big := events(1)
	big[0].UserId = string(make([]byte, 4096))
	require.NoError(t, stream.Send(&ingestv1.IngestStreamRequest{Sequence: 1, Events: big}))
	_, err = stream.Recv()
	require.ErrorContains(t, err, "larger than max")
}
