package grpcserver

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/tenancy"
)

// observer records request rate, errors and latency per RPC, and writes one log line per call.
type observer struct {
	logger   *slog.Logger
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

func newObserver(logger *slog.Logger, reg prometheus.Registerer) (*observer, error) {
	o := &observer{
		logger: logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_grpc_requests_total",
			Help: "gRPC calls handled, by full method and status code (REST gateway calls included).",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "abacus_grpc_request_duration_seconds",
			Help:                        "gRPC call latency by full method (streams: their whole life).",
			Buckets:                     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor: 1.1,
		}, []string{"method"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_grpc_requests_in_flight",
			Help: "gRPC calls being handled, by full method.",
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{o.requests, o.duration, o.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *observer) done(ctx context.Context, ci *callInfo, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	o.requests.WithLabelValues(method, code.String()).Inc()
	o.duration.WithLabelValues(method).Observe(elapsed.Seconds())

	level := slog.LevelInfo
	switch code {
	case codes.OK, codes.Canceled:
		level = slog.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable:
		level = slog.LevelWarn
	}
	if !o.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("rpc.method", method),
		slog.String("rpc.code", code.String()),
		slog.Duration("duration", elapsed),
	}
	if ci.tenant != "" {
		attrs = append(attrs, slog.String("tenant_id", ci.tenant.String()))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	o.logger.LogAttrs(ctx, level, "rpc finished", attrs...)
}

func (o *observer) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		g := o.inflight.WithLabelValues(info.FullMethod)
		g.Inc()
		defer g.Dec()
		ctx, ci := withCallInfo(ctx)
		resp, err := handler(ctx, req)
		o.done(ctx, ci, info.FullMethod, start, err)
		return resp, err
	}
}

func (o *observer) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		g := o.inflight.WithLabelValues(info.FullMethod)
		g.Inc()
		defer g.Dec()
		ctx, ci := withCallInfo(ss.Context())
		err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		o.done(ctx, ci, info.FullMethod, start, err)
		return err
	}
}

// callInfo is filled in by inner interceptors so that the observer's log line can name the
// tenant, which is only known once auth has run.
type callInfo struct{ tenant tenancy.ID }

type callInfoKey struct{}

func withCallInfo(ctx context.Context) (context.Context, *callInfo) {
	ci := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, ci), ci
}

func recordTenant(ctx context.Context) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		if id, err := tenancy.FromContext(ctx); err == nil {
			ci.tenant = id
		}
	}
}

// tenantRecorder notes the authenticated tenant for the observer's log line.
func tenantRecorder() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			recordTenant(ctx)
			return handler(ctx, req)
		}, func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			recordTenant(ss.Context())
			return handler(srv, ss)
		}
}

// contextStream replaces a stream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
