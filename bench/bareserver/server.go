package bareserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

// Defaults of [Config]: those of abacusd (ABACUS_MAX_REQUEST_BYTES and the ingest service's
// per-stream concurrency).
const (
	DefaultMaxRecvMsgBytes      = 8 << 20
	DefaultMaxInFlightPerStream = 8
)

// Config configures the baseline server. Zero values mean the defaults.
type Config struct {
	// MaxRecvMsgBytes bounds every request message, 1 KiB to 256 MiB (default 8 MiB).
	MaxRecvMsgBytes int
	// MaxInFlightPerStream is how many batches of one stream are handled at once, 1 to 1024
	// (default 8); when reached, the stream stops reading.
	MaxInFlightPerStream int
}

func (c Config) withDefaults() Config {
	if c.MaxRecvMsgBytes == 0 {
		c.MaxRecvMsgBytes = DefaultMaxRecvMsgBytes
	}
	if c.MaxInFlightPerStream == 0 {
		c.MaxInFlightPerStream = DefaultMaxInFlightPerStream
	}
	return c
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	if c.MaxRecvMsgBytes != 0 && (c.MaxRecvMsgBytes < 1<<10 || c.MaxRecvMsgBytes > 256<<20) {
		errs = append(errs, fmt.Errorf("bareserver: config: max receive message bytes is %d, must be 1 KiB to 256 MiB", c.MaxRecvMsgBytes))
	}
	if c.MaxInFlightPerStream < 0 || c.MaxInFlightPerStream > 1024 {
		errs = append(errs, fmt.Errorf("bareserver: config: max in flight per stream is %d, must be 1 to 1024", c.MaxInFlightPerStream))
	}
	return errors.Join(errs...)
}

// Service accepts every event it is sent. Create it with [New].
type Service struct {
	ingestv1.UnimplementedIngestServiceServer
	cfg Config
}

var _ ingestv1.IngestServiceServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg.withDefaults()}, nil
}

// NewServer returns a gRPC server with abacusd's transport options and the service
// registered. Nothing listens until the caller serves it.
func NewServer(cfg Config) (*grpc.Server, error) {
	svc, err := New(cfg)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(ServerOptions(svc.cfg)...)
	ingestv1.RegisterIngestServiceServer(srv, svc)
	return srv, nil
}

// ServerOptions are the transport options of abacusd's gRPC server (internal/grpcserver),
// without its interceptors and its OpenTelemetry stats handler.
func ServerOptions(cfg Config) []grpc.ServerOption {
	cfg = cfg.withDefaults()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
}

// Ingest accepts every event of the request.
func (s *Service) Ingest(_ context.Context, req *ingestv1.IngestRequest) (*ingestv1.IngestResponse, error) {
	return &ingestv1.IngestResponse{Accepted: int32(len(req.GetEvents()))}, nil
}

// IngestStream answers every batch with all of its events accepted. A reader goroutine takes
// a token per batch before it receives it; a goroutine per batch builds the answer; this
// goroutine sends the answers in completion order and gives the tokens back. When every token
// is taken the reader stops, and HTTP/2 flow control pushes back on the client.
func (s *Service) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	limit := s.cfg.MaxInFlightPerStream
	tokens := make(chan struct{}, limit)
	responses := make(chan *ingestv1.IngestStreamResponse, limit) // never full: a token per answer
	readErr := make(chan error, 1)
	go func() {
		readErr <- func() error {
			for {
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				req, err := stream.Recv()
				if err != nil {
					<-tokens // no batch came with this token
					return err
				}
				go func() {
					responses <- &ingestv1.IngestStreamResponse{Sequence: req.GetSequence(), Accepted: int32(len(req.GetEvents()))}
				}()
			}
		}()
	}()
	for {
		select {
		case resp := <-responses:
			if err := stream.Send(resp); err != nil {
				return err
			}
			<-tokens
		case err := <-readErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			// End of input: answer what was read, then end the stream with OK.
			for len(tokens) > 0 {
				if err := stream.Send(<-responses); err != nil {
					return err
				}
				<-tokens
			}
			return nil
		}
	}
}
