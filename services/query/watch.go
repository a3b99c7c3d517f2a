package query

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/tenancy"
)

// WatchTimeSeries sends the series selected by req, then the points that
// change or appear, with heartbeats in quiet periods, until the client goes
// away (which ends the stream without an error).
func (s *Service) WatchTimeSeries(req *queryv1.WatchTimeSeriesRequest, stream grpc.ServerStreamingServer[queryv1.WatchTimeSeriesResponse]) error {
	tenant, err := tenancy.FromContext(stream.Context())
	if err != nil {
		return fmt.Errorf("query: watch time series: %w", err)
	}
	sel, err := parseSeries(req)
	if err != nil {
		return err
	}
	w := watchRequest{series: sel, limitField: "start"}
	if req.GetEnd() != nil {
		end, err := timestamp("end", req.GetEnd())
		if err != nil {
			return err
		}
		if !end.After(req.GetStart().AsTime()) {
			return invalidArgument("end", "must be after start")
		}
		w.end, w.limitField = end, "end"
	}
	first := w.window(s.cfg.Now())
	if msg := s.overLimit(first); msg != "" {
		return invalidArgument(w.limitField, msg)
	}
	return s.watch(stream.Context(), tenant, w, first, stream.Send)
}

// watchRequest is a checked watch request.
type watchRequest struct {
	series
	// end is the requested end of the range; zero means the range follows
	// the clock.
	end time.Time
	// limitField is the request field blamed when the range breaks a limit.
	limitField string
}

// window returns the range the watch covers at time now.
func (w watchRequest) window(now time.Time) window {
	if w.end.IsZero() {
		return w.series.window(now)
	}
	return w.series.window(w.end)
}

// watch runs the loop of one watch stream: a snapshot of win (checked
// against the limits by the caller), then a diff after every signal from
// changes, and a heartbeat whenever nothing was sent for WatchHeartbeat. It
// returns when ctx is done, a send fails, the store fails, or a range that
// follows the clock outgrows the limits.
func (s *Service) watch(ctx context.Context, tenant tenancy.ID, w watchRequest, win window,
	send func(*queryv1.WatchTimeSeriesResponse) error) (err error) {
	s.watches.Inc()
	defer s.watches.Dec()
	log := s.logger.With(slog.String("tenant_id", tenant.String()),
		slog.String("event_type", w.eventType), slog.String("granularity", w.gran.store))
	log.DebugContext(ctx, "watch started", slog.Bool("follows_clock", w.end.IsZero()))
	defer func() { log.DebugContext(ctx, "watch ended", slog.Any("error", err)) }()

	reread, stop := s.changes(ctx, tenant, w.eventType)
	defer stop()
	obs := s.readSeconds.WithLabelValues(rpcWatchTimeSeries)

	values, updated, err := s.read(ctx, obs, tenant, w.series, win)
	if err != nil {
		return s.watchFailed(ctx, err)
	}
	snapshot := make([]*queryv1.Point, len(values))
	for i, v := range values {
		snapshot[i] = win.point(i, v, updated[i])
	}
	if err := s.sendAt(ctx, send, &queryv1.WatchTimeSeriesResponse{
		Points: snapshot, Snapshot: true, UniqueUsersRelativeError: w.metric.relativeError(),
	}); err != nil {
		return err
	}

	heartbeat := time.NewTimer(s.cfg.WatchHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return endOfStream(ctx)

		case <-heartbeat.C:
			if err := s.sendAt(ctx, send, &queryv1.WatchTimeSeriesResponse{}); err != nil {
				return err
			}
			heartbeat.Reset(s.cfg.WatchHeartbeat)

		case <-reread:
			next := w.window(s.cfg.Now())
			if next.end.Before(win.end) {
				// The clock stepped back; buckets already sent stay.
				next.end = win.end
			}
			if msg := s.overLimit(next); msg != "" {
				return status.Errorf(codes.OutOfRange,
					"watch range outgrew its limit (%s); watch again with a later start", msg)
			}
			nextValues, nextUpdated, err := s.read(ctx, obs, tenant, w.series, next)
			if err != nil {
				return s.watchFailed(ctx, err)
			}
			changed := changedPoints(next, values, nextValues, nextUpdated)
			win, values = next, nextValues
			if len(changed) == 0 {
				continue
			}
			if err := s.sendAt(ctx, send, &queryv1.WatchTimeSeriesResponse{Points: changed}); err != nil {
				return err
			}
			heartbeat.Reset(s.cfg.WatchHeartbeat)
		}
	}
}

// changedPoints returns the points of w whose value differs from before, and
// every point beyond before's end (a bucket the range grew into is new even
// when it is zero); updated are the change times of after's buckets.
func changedPoints(w window, before, after []float64, updated []time.Time) []*queryv1.Point {
	var out []*queryv1.Point
	for i, v := range after {
		if i >= len(before) || before[i] != v {
			out = append(out, w.point(i, v, updated[i]))
		}
	}
	return out
}

// sendAt stamps msg with the current time and sends it. A failed send after
// the client went away ends the watch quietly.
func (s *Service) sendAt(ctx context.Context, send func(*queryv1.WatchTimeSeriesResponse) error,
	msg *queryv1.WatchTimeSeriesResponse) error {
	msg.Time = timestamppb.New(s.cfg.Now())
	if err := send(msg); err != nil {
		if ctx.Err() != nil {
			return endOfStream(ctx)
		}
		return fmt.Errorf("query: watch time series: send: %w", err)
	}
	return nil
}

// watchFailed turns a store error into the watch's result; one caused by the
// client going away is not a failure.
func (s *Service) watchFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return endOfStream(ctx)
	}
	return fmt.Errorf("query: watch time series: %w", err)
}

// changes returns a channel that receives when a watch of tenant's eventType
// should re-read its range, and a function that releases it. Signals are
// coalesced: one receive stands for any number of changes since the last.
//
// This is the seam between the watch loop and what drives it. Today it polls:
// a signal every WatchPollInterval. When the rollup consumer publishes
// "bucket changed" notifications, this becomes a subscription to the tenant's
// changes for eventType, and the loop stays as it is.
func (s *Service) changes(ctx context.Context, _ tenancy.ID, _ string) (<-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	signals := make(chan struct{}, 1)
	go func() {
		ticker := time.NewTicker(s.cfg.WatchPollInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				select {
				case signals <- struct{}{}:
				default: // a signal is already pending; it covers this one
				}
			}
		}
	}()
	return signals, cancel
}
