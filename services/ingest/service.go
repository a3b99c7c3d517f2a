package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/eventlog"
	eventlogv1 "github.com/abacus-analytics/abacus/gen/abacus/eventlog/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Producer writes a tenant's batch of accepted events durably, returning nil
// only once it is acknowledged. *eventlog.Producer implements it.
type Producer interface {
	Produce(ctx context.Context, tenant tenancy.ID, batch *eventlogv1.Batch) error
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
}

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
	validator, err := protovalidate.New(protovalidate.WithMessages(&ingestv1.Event{}, &ingestv1.IngestStreamRequest{}))
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
	return &Service{cfg: cfg, producer: producer, validator: validator, logger: logger, metrics: m}, nil
}

// Ingest judges the request's events, writes the accepted ones durably and
// answers with the number accepted and a verdict for every other event. When
// the write fails the whole call fails with an [*UnavailableError] (retryable)
// and nothing is accepted. Request-level rules (1 to 10,000 events) are
// checked by the validation interceptor before this runs.
func (s *Service) Ingest(ctx context.Context, req *ingestv1.IngestRequest) (*ingestv1.IngestResponse, error) {
	tenant, err := tenancy.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.process(ctx, tenant, req.GetEvents())
	if err != nil {
		return nil, err
	}
	if len(v.accepted) == 0 && len(v.rejected) > 0 {
		return nil, &NothingAcceptedError{Rejected: v.rejected}
	}
	return &ingestv1.IngestResponse{Accepted: int32(len(v.accepted)), Rejected: v.rejected}, nil
}

// process judges one batch and writes its accepted events as one batch. On a
// failed write it returns the verdicts with an *UnavailableError: none of
// v.accepted were accepted.
func (s *Service) process(ctx context.Context, tenant tenancy.ID, events []*ingestv1.Event) (verdicts, error) {
	now := s.cfg.Now()
	v, err := s.judge(events, now)
	if err != nil {
		return verdicts{}, err
	}
	s.metrics.batch.Observe(float64(len(events)))
	s.metrics.countRejected(v.rejected)
	if len(v.accepted) == 0 {
		return v, nil
	}

	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	err = s.producer.Produce(pctx, tenant, &eventlogv1.Batch{
		TenantId:     string(tenant),
		Events:       v.accepted,
		ReceivedTime: timestamppb.New(now),
	})
	if err != nil {
		// Not logged here: the error interceptor logs a failed Ingest, and
		// streamBatch logs the failures it absorbs.
		s.metrics.events.WithLabelValues(reasonLabel(ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE)).Add(float64(len(v.accepted)))
		return v, &UnavailableError{Events: len(v.accepted), Cause: err}
	}
	s.metrics.events.WithLabelValues(resultAccepted).Add(float64(len(v.accepted)))
	return v, nil
}

// IngestStream serves a bidirectional stream of batches; see the package
// documentation for its concurrency and backpressure.
func (s *Service) IngestStream(stream grpc.BidiStreamingServer[ingestv1.IngestStreamRequest, ingestv1.IngestStreamResponse]) error {
	tenant, err := tenancy.FromContext(stream.Context())
	if err != nil {
		return err
	}
	return s.serveStream(stream.Context(), tenant, stream)
}

// batchStream is the part of the gRPC stream serveStream uses.
type batchStream interface {
	Recv() (*ingestv1.IngestStreamRequest, error)
	Send(*ingestv1.IngestStreamResponse) error
}

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
	batches := make(chan *ingestv1.IngestStreamRequest)
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

		case <-wctx.Done():
			cancel()
			if err := workers.Wait(); err != nil {
				return err
			}
			return ended()
		}
	}
}

// streamBatch answers one batch of a stream. Request-level violations
// (no events, more than 10,000) are answered in the response rather than by
// ending the stream. A failed write becomes REJECT_REASON_UNAVAILABLE
// verdicts. The error is a server bug (the validator failed) and ends the
// stream.
func (s *Service) streamBatch(ctx context.Context, tenant tenancy.ID, req *ingestv1.IngestStreamRequest) (*ingestv1.IngestStreamResponse, error) {
	resp := &ingestv1.IngestStreamResponse{Sequence: req.GetSequence()}
	if err := s.validator.Validate(req); err != nil {
		rejected, err := s.invalidBatch(req, err)
		if err != nil {
			return nil, err
		}
		resp.Rejected = rejected
		return resp, nil
	}

	v, err := s.process(ctx, tenant, req.GetEvents())
	var unavailable *UnavailableError
	switch {
	case errors.As(err, &unavailable):
		if ctx.Err() == nil { // else the client is gone and nobody waits for the answer
			s.logger.Warn("event log write failed; stream batch answered with UNAVAILABLE verdicts",
				"tenant_id", tenant, "sequence", req.GetSequence(), "events", unavailable.Events, "error", unavailable.Cause)
		}
		resp.Rejected = withUnavailable(v)
	case err != nil:
		return nil, err
	default:
		resp.Accepted = int32(len(v.accepted))
		resp.Rejected = v.rejected
	}
	return resp, nil
}

// invalidBatch answers a stream batch that breaks the request-level rules:
// an empty batch gets an empty verdict, every event of a batch over the limit
// is rejected with BATCH_TOO_LARGE.
func (s *Service) invalidBatch(req *ingestv1.IngestStreamRequest, err error) ([]*ingestv1.RejectedEvent, error) {
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) || len(ve.Violations) == 0 {
		return nil, fmt.Errorf("ingest: validate stream request: %w", err)
	}
	events := req.GetEvents()
	if len(events) == 0 {
		return nil, nil
	}
	p := &problem{ingestv1.RejectReason_REJECT_REASON_BATCH_TOO_LARGE,
		fmt.Sprintf("batch has %d events, limit %d; none were processed, send them in smaller batches", len(events), contractMaxBatchEvents)}
	if v := ve.Violations[0]; v.Proto.GetRuleId() != "repeated.max_items" {
		// A request rule added to the proto without handling here.
		p = &problem{ingestv1.RejectReason_REJECT_REASON_UNSPECIFIED, "batch is invalid: " + ve.Error()}
	}
	s.metrics.batch.Observe(float64(len(events)))
	rejected := make([]*ingestv1.RejectedEvent, len(events))
	for i, ev := range events {
		rejected[i] = rejectedEvent(i, ev, p)
	}
	s.metrics.countRejected(rejected)
	return rejected, nil
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
	for i, ev := range v.accepted {
		idx := v.acceptedIndex[i]
		for len(r) > 0 && r[0].GetIndex() < idx {
			out, r = append(out, r[0]), r[1:]
		}
		out = append(out, &ingestv1.RejectedEvent{
			Index:      idx,
			EventId:    echo(ev.GetEventId()),
			Reason:     ingestv1.RejectReason_REJECT_REASON_UNAVAILABLE,
			Message:    msg,
			RetryAfter: retry,
		})
	}
	return append(out, r...)
}
