package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/abacus-analytics/abacus/auth"
	"github.com/abacus-analytics/abacus/eventlog"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Producer writes a tenant's batch of accepted events, encoded, durably,
// returning nil only once it is acknowledged. *eventlog.Producer implements
// it.
type Producer interface {
	ProduceEncoded(ctx context.Context, tenant tenancy.ID, received time.Time, events []eventlog.EncodedEvent) error
}

var _ Producer = (*eventlog.Producer)(nil)

// Service implements ingestv1.IngestServiceServer. Create it with [New].
type Service struct {
	ingestv1.UnimplementedIngestServiceServer

	cfg       Config
	producer  Producer
	validator protovalidate.Validator
	logger    *slog.Logger
	metrics   *metrics

	draining  chan struct{} // closed by Drain
	drainOnce sync.Once
}

// Drain asks every open IngestStream to end: each stops taking batches,
// answers those it is processing, and ends with UNAVAILABLE so that its
// client reconnects (to another node). Batches a client sent but the server
// had not started are not answered; clients resend them. Call it when the
// process begins a graceful stop, before the gRPC server's GracefulStop,
// which would otherwise wait for long-lived streams until its timeout.
func (s *Service) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// errDraining ends a stream when the server stops.
var errDraining = status.Error(codes.Unavailable, "the server is shutting down; every batch sent before this was answered except those without an answer, which were not processed: reconnect and send them again")

var _ ingestv1.IngestServiceServer = (*Service)(nil)

// New returns the ingest service. It registers its metrics with reg (nil
// means not registered) and starts nothing.
func New(cfg Config, producer Producer, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if producer == nil {
		return nil, errors.New("ingest: new: producer is nil")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// One validator, its rules compiled here rather than on the first request.
	validator, err := protovalidate.New(protovalidate.WithMessages(&ingestv1.Event{}))
	if err != nil {
		return nil, fmt.Errorf("ingest: new: validator: %w", err)
	}
	m := newMetrics()
	if reg != nil {
		for _, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ingest: new: register metrics: %w", err)
			}
		}
	}
	return &Service{cfg: cfg, producer: producer, validator: validator, logger: logger, metrics: m, draining: make(chan struct{})}, nil
}

// Ingest judges the request's events, admits the valid ones under the
// tenant's rate limits and quota, writes the admitted ones durably and answers
// with the number accepted and a verdict for every other event. When the
// write fails the whole call fails with an [*UnavailableError] (retryable)
// and nothing is accepted; when nothing is accepted because of a limit it
// fails with a [*ThrottledError] (RESOURCE_EXHAUSTED). Request-level rules
// (1 to 10,000 events) are checked by the validation interceptor before this
// runs.
func (s *Service) Ingest(ctx context.Context, req *ingestv1.IngestRequest) (*ingestv1.IngestResponse, error) {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	events := req.GetEvents()
	v, adm, err := s.process(ctx, tenant, len(events),
		func(now time.Time, lim *tenancy.Limits) (verdicts, error) { return s.judge(events, now, lim) })
	if adm.events != nil {
		// Best effort: SetHeader only fails once headers were sent.
		_ = grpc.SetHeader(ctx, rateLimitHeaders(adm.events))
	}
	if err != nil {
		return nil, err
	}
	if len(v.accepted) == 0 && len(v.rejected) > 0 {
		if adm.throttled != nil {
			return nil, &ThrottledError{Tenant: tenant, Rejected: v.rejected, throttle: adm.throttled}
		}
		return nil, &NothingAcceptedError{Rejected: v.rejected, Tenant: tenant, Limits: adm.limits}
	}
	return &ingestv1.IngestResponse{Accepted: int32(len(v.accepted)), Rejected: v.rejected}, nil
}

// process handles one batch of n events: judge gives each a verdict, the
// valid ones are admitted under the tenant's limits, and the admitted ones
// are written as one batch. On a failed write process
// returns the verdicts with an *UnavailableError: none of v.accepted were
// accepted, and their quota reservation is given back.
func (s *Service) process(ctx context.Context, tenant tenancy.ID, n int,
	judge func(time.Time, *tenancy.Limits) (verdicts, error)) (verdicts, admission, error) {
	now := s.cfg.Now()
	lim := s.cfg.Limits.For(tenant)
	s.metrics.batch.Observe(float64(n))
	adm := admission{limits: lim}

	v, err := judge(now, &lim)
	if err != nil {
		return verdicts{}, adm, err
	}
	if len(v.accepted) > 0 {
		if err := s.admit(ctx, tenant, &lim, now, &v, &adm); err != nil {
			return verdicts{}, adm, err
		}
	}
	s.metrics.countRejected(v.rejected)
	if len(v.accepted) == 0 {
		return v, adm, nil
	}

	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	err = s.producer.ProduceEncoded(pctx, tenant, now, v.encoded())
	if err != nil {
		// Not logged here: the error interceptor logs a failed Ingest, and
		// streamBatch logs the failures it absorbs.
		s.metrics.events.WithLabelValues(reasonLabel(ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE)).Add(float64(len(v.accepted)))
		if adm.reserved > 0 && s.cfg.Quota != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if rerr := s.cfg.Quota.Refund(rctx, tenant, adm.period, adm.reserved); rerr != nil {
				s.logger.Warn("quota refund after a failed write failed; usage overcounts", "tenant_id", tenant, "events", adm.reserved, "error", rerr)
			}
			cancel()
		}
		return v, adm, &UnavailableError{Events: len(v.accepted), Cause: err}
	}
	s.metrics.events.WithLabelValues(resultAccepted).Add(float64(len(v.accepted)))
	return v, adm, nil
}

// IngestStream serves a bidirectional stream of batches decoded by gRPC; see
// the package documentation for its concurrency and backpressure. A server
// registered with [Service.Register] serves IngestStream with
// [Service.ingestStreamWire] instead, which is faster and answers the same.
func (s *Service) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	tenant, err := tenancy.FromContext(stream.Context())
	if err != nil {
		return err
	}
	return s.serveStream(stream.Context(), tenant, decodedStream{stream})
}

// Register registers the service on r like
// ingestv1.RegisterIngestServiceServer, except that IngestStream batches
// are judged as received, in their encoding (see wire.go).
func (s *Service) Register(r grpc.ServiceRegistrar) {
	desc := ingestv1.IngestService_ServiceDesc
	desc.Streams = slices.Clone(desc.Streams)
	for i := range desc.Streams {
		if desc.Streams[i].StreamName == "IngestStream" {
			desc.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
				return srv.(*Service).ingestStreamWire(stream)
			}
		}
	}
	r.RegisterService(&desc, s)
}

// ingestStreamWire is IngestStream on batches as received.
func (s *Service) ingestStreamWire(stream grpc.ServerStream) error {
	tenant, err := tenancy.FromContext(stream.Context())
	if err != nil {
		return err
	}
	return s.serveStream(stream.Context(), tenant, wireStream{stream})
}

// streamRequest is one batch of a stream: decoded, or as received.
type streamRequest struct {
	seq     uint64
	decoded []*ingestv1.Event
	wire    [][]byte
	n       int
}

// batchStream is the part of the gRPC stream serveStream uses.
type batchStream interface {
	Recv() (streamRequest, error)
	Send(*ingestv1.IngestStreamResponse) error
}

// decodedStream reads batches decoded by gRPC.
type decodedStream struct {
	grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]
}

func (d decodedStream) Recv() (streamRequest, error) {
	req, err := d.BidiStreamingServer.Recv()
	if err != nil {
		return streamRequest{}, err
	}
	return streamRequest{seq: req.GetSequence(), decoded: req.GetEvents(), n: len(req.GetEvents())}, nil
}

// wireStream reads batches undecoded. It receives each into an Empty, whose
// decoding keeps every field as unknown bytes — the request as it arrived —
// so no custom codec is needed and every interceptor still sees a proto
// message.
type wireStream struct{ grpc.ServerStream }

func (w wireStream) Recv() (streamRequest, error) {
	var raw emptypb.Empty
	if err := w.RecvMsg(&raw); err != nil {
		return streamRequest{}, err
	}
	seq, events, err := parseStreamRequest(raw.ProtoReflect().GetUnknown())
	if err != nil {
		return streamRequest{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return streamRequest{seq: seq, wire: events, n: len(events)}, nil
}

func (w wireStream) Send(resp *ingestv1.IngestStreamResponse) error { return w.SendMsg(resp) }

// serveStream runs one stream: a reader goroutine (the only caller of Recv),
// a worker per batch in flight, and this goroutine as the only caller of
// Send. A token per batch, taken before Recv and given back after its
// response is sent, caps the batches held in memory at MaxInFlightPerStream:
// when all are taken, the reader stops reading and gRPC flow control pushes
// back on the client.
func (s *Service) serveStream(parent context.Context, tenant tenancy.ID, stream batchStream) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel() // on every return: abandon batches in flight, stop the reader
	// ended reports why the stream's own context ended (cancel above does
	// not count).
	ended := func() error { return status.FromContextError(parent.Err()).Err() }

	limit := s.cfg.MaxInFlightPerStream
	tokens := make(chan struct{}, limit)
	// Never full: a worker holds a token until its response is sent.
	responses := make(chan *ingestv1.IngestStreamResponse, limit)
	batches := make(chan streamRequest)
	readErr := make(chan error, 1)
	workers, wctx := errgroup.WithContext(ctx)

	// The reader is not waited for: it may be blocked in Recv, which only
	// returns once the stream ends, and the stream ends when this handler
	// returns. It hands every batch it read to this goroutine before it
	// reports the end of input, so no batch is lost between the two.
	go func() {
		readErr <- func() error {
			for {
				select {
				case tokens <- struct{}{}:
				case <-wctx.Done():
					return nil
				}
				req, err := stream.Recv()
				if err != nil {
					return err
				}
				select {
				case batches <- req:
				case <-wctx.Done():
					return nil
				}
			}
		}()
	}()

	s.logger.Debug("ingest stream opened", "tenant_id", tenant)
	var answered int
	defer func() { s.logger.Debug("ingest stream closed", "tenant_id", tenant, "batches", answered) }()
	send := func(resp *ingestv1.IngestStreamResponse) error {
		if err := stream.Send(resp); err != nil {
			return err
		}
		answered++
		return nil
	}

	for {
		select {
		case req := <-batches:
			workers.Go(func() error {
				resp, err := s.streamBatch(wctx, tenant, req)
				if err != nil {
					return err
				}
				responses <- resp
				return nil
			})

		case resp := <-responses:
			if err := send(resp); err != nil {
				cancel()
				_ = workers.Wait()
				return err
			}
			<-tokens

		case err := <-readErr:
			if !errors.Is(err, io.EOF) {
				// Canceled or broken stream (or a worker failed first and
				// the reader stopped): abandon the batches in flight.
				cancel()
				if werr := workers.Wait(); werr != nil {
					return werr
				}
				if err == nil {
					return ended()
				}
				return err
			}
			// End of input: answer every batch read, then end with OK.
			if err := workers.Wait(); err != nil {
				return err
			}
			close(responses)
			for resp := range responses {
				if err := send(resp); err != nil {
					return err
				}
			}
			return nil

		case <-s.draining:
			// Answer what is being processed, take nothing more.
			if err := workers.Wait(); err != nil {
				return err
			}
			for {
				select {
				case resp := <-responses:
					if err := send(resp); err != nil {
						return err
					}
					continue
				default:
				}
				return errDraining
			}

		case <-wctx.Done():
			cancel()
			if err := workers.Wait(); err != nil {
				return err
			}
			return ended()
		}
	}
}

// streamBatch answers one batch of a stream. A batch over the contract's
// limit of events is answered with BATCH_TOO_LARGE verdicts rather than by
// ending the stream; an empty one with an empty answer. A failed write
// becomes REJECT_REASON_UNAVAILABLE verdicts. The error is a malformed event
// or a server bug (the validator failed), and ends the stream.
func (s *Service) streamBatch(ctx context.Context, tenant tenancy.ID, req streamRequest) (*ingestv1.IngestStreamResponse, error) {
	resp := &ingestv1.IngestStreamResponse{Sequence: req.seq}
	idOf := func(i int) string {
		if req.wire != nil {
			return string(wireEventID(req.wire[i]))
		}
		return req.decoded[i].GetEventId()
	}
	if s.cfg.Keys != nil {
		if p, ok := auth.PrincipalFrom(ctx); ok {
			switch err := s.cfg.Keys.Recheck(ctx, p); {
			case errors.Is(err, auth.ErrTenantSuspended):
				msg := fmt.Sprintf("tenant %s is suspended; no event is accepted until the operator resumes it", tenant)
				resp.Rejected = make([]*ingestv1.RejectedEvent, req.n)
				for i := range req.n {
					resp.Rejected[i] = rejectedEvent(i, idOf(i), reject(ingestv1.RejectReason_REJECT_REASON_TENANT_SUSPENDED, "%s", msg))
				}
				s.metrics.countRejected(resp.Rejected)
				return resp, nil
			case errors.Is(err, auth.ErrUnauthenticated):
				return nil, status.Error(codes.Unauthenticated, "invalid credentials: the stream's API key was revoked or expired")
			}
			// Store unavailable: the stream goes on with the credential it
			// opened with, as new requests do with a cached record.
		}
	}
	switch {
	case req.n == 0:
		return resp, nil
	case req.n > contractMaxBatchEvents:
		s.metrics.batch.Observe(float64(req.n))
		p := &problem{reason: ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE,
			message: fmt.Sprintf("batch has %d events, limit %d; none were processed, send them in smaller batches", req.n, contractMaxBatchEvents)}
		resp.Rejected = make([]*ingestv1.RejectedEvent, req.n)
		for i := range req.n {
			resp.Rejected[i] = rejectedEvent(i, idOf(i), p)
		}
		s.metrics.countRejected(resp.Rejected)
		return resp, nil
	}

	v, _, err := s.process(ctx, tenant, req.n, func(now time.Time, lim *tenancy.Limits) (verdicts, error) {
		if req.wire != nil {
			return s.judgeWire(req.wire, now, lim)
		}
		return s.judge(req.decoded, now, lim)
	})
	var unavailable *UnavailableError
	switch {
	case errors.As(err, &unavailable):
		if ctx.Err() == nil { // else the client is gone and nobody waits for the answer
			s.logger.Warn("event log write failed; stream batch answered with UNAVAILABLE verdicts",
				"tenant_id", tenant, "sequence", req.seq, "events", unavailable.Events, "error", unavailable.Cause)
		}
		resp.Rejected = withUnavailable(v)
	case errors.Is(err, errMalformed):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, err
	default:
		resp.Accepted = int32(len(v.accepted))
		resp.Rejected = v.rejected
	}
	return resp, nil
}

// withUnavailable merges the verdicts of a batch whose write failed: the
// events that would have been accepted are rejected with
// REJECT_REASON_UNAVAILABLE and a retry delay; the invalid ones keep their
// own reason (retrying them cannot help). The result is ordered by index.
func withUnavailable(v verdicts) []*ingestv1.RejectedEvent {
	out := make([]*ingestv1.RejectedEvent, 0, len(v.accepted)+len(v.rejected))
	const msg = "the event log is unavailable: the event was not written durably and not accepted; retry it with the same event_id"
	retry := durationpb.New(UnavailableRetryAfter)
	r := v.rejected
	for _, a := range v.accepted {
		for len(r) > 0 && r[0].GetIndex() < a.index {
			out, r = append(out, r[0]), r[1:]
		}
		out = append(out, &ingestv1.RejectedEvent{
			Index:      a.index,
			EventId:    echo(string(a.id)),
			Reason:     ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE,
			Message:    msg,
			RetryAfter: retry,
		})
	}
	return append(out, r...)
}
