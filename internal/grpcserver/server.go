// Package grpcserver builds abacusd's gRPC server: the one ordered interceptor chain that every
// call goes through — gRPC clients and REST gateway requests alike — plus the health and
// reflection services.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"buf.build/go/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/abacus-analytics/abacus/auth"
)

// Config configures the gRPC server.
type Config struct {
	// MaxRecvMsgBytes bounds every request message.
	MaxRecvMsgBytes int
	// Policies says, per full method name, who may call it. Methods absent are refused.
	Policies map[string]auth.MethodPolicy
	// SelfValidated lists request messages that the validation interceptor leaves to the
	// handler (stream batches answered with per-event verdicts).
	SelfValidated []protoreflect.FullName
	// AuthFailureGuard, when set, runs just before authentication and refuses clients with too
	// many failed authentications (*ratelimit.AuthFailureGuard).
	AuthFailureGuard Guard
	// TracerProvider and Propagator for the OpenTelemetry stats handler; nil means no-op.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
}

// Validate returns every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxRecvMsgBytes < 1024 {
		errs = append(errs, fmt.Errorf("grpcserver: max receive message size %d is below 1 KiB", c.MaxRecvMsgBytes))
	}
	if len(c.Policies) == 0 {
		errs = append(errs, errors.New("grpcserver: no method policies: every call would be refused"))
	}
	return errors.Join(errs...)
}

// Guard provides interceptors that run before authentication.
type Guard interface {
	UnaryServerInterceptor() grpc.UnaryServerInterceptor
	StreamServerInterceptor() grpc.StreamServerInterceptor
}

// Authenticator provides the auth interceptors (implemented by *auth.Authenticator).
type Authenticator interface {
	UnaryServerInterceptor(policies map[string]auth.MethodPolicy) grpc.UnaryServerInterceptor
	StreamServerInterceptor(policies map[string]auth.MethodPolicy) grpc.StreamServerInterceptor
}

var _ Authenticator = (*auth.Authenticator)(nil)

// Server is the gRPC server with its health service.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
}

// New builds the server. Services are registered on Server.GRPC by the caller; nothing listens
// until the caller serves it.
func New(cfg Config, authn Authenticator, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	obs, err := newObserver(logger, reg)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: register metrics: %w", err)
	}
	pv, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("grpcserver: protovalidate: %w", err)
	}
	val := &validator{v: pv, skip: map[protoreflect.FullName]bool{}}
	for _, name := range cfg.SelfValidated {
		val.skip[name] = true
	}

	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	recordUnary, recordStream := tenantRecorder()

	var otelOpts []otelgrpc.Option
	if cfg.TracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.Propagator != nil {
		otelOpts = append(otelOpts, otelgrpc.WithPropagators(cfg.Propagator))
	}

	unary := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recoverOpt),
		obs.unary(),
		errorUnaryInterceptor(logger),
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(recoverOpt),
		obs.stream(),
		errorStreamInterceptor(logger),
	}
	if cfg.AuthFailureGuard != nil {
		unary = append(unary, cfg.AuthFailureGuard.UnaryServerInterceptor())
		stream = append(stream, cfg.AuthFailureGuard.StreamServerInterceptor())
	}
	unary = append(unary, authn.UnaryServerInterceptor(cfg.Policies), recordUnary, val.unary())
	stream = append(stream, authn.StreamServerInterceptor(cfg.Policies), recordStream, val.stream())

	srv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		// Order of interceptors is important:
		//  1. recovery: outermost, so a panic anywhere below becomes INTERNAL instead of a crash.
		//  2. observer: per-RPC metrics and the one log line per call, seeing the final code.
		//  3. errors: maps domain errors to gRPC statuses with details (and masks unknown ones),
		//     so the observer and clients see the same code.
		//  4. auth-failure guard (optional): refuses a client address that failed to
		//     authenticate too often, before its credential costs a lookup.
		//  5. auth: API key or admin token → principal and tenant in the context; unauthenticated
		//     calls go no further, so nothing below does work for them.
		//  6. tenant recorder: notes the tenant for the observer's log line.
		//  7. validation: protovalidate rules from the .proto files → INVALID_ARGUMENT.
		//  8. handler.
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return &Server{GRPC: srv, Health: hs}, nil
}

// PublicMethods are the methods anyone may call without credentials: health checks and server
// reflection (so grpcurl can list services).
func PublicMethods() map[string]auth.MethodPolicy {
	public := auth.MethodPolicy{Public: true}
	return map[string]auth.MethodPolicy{
		healthpb.Health_Check_FullMethodName:                             public,
		healthpb.Health_Watch_FullMethodName:                             public,
		healthpb.Health_List_FullMethodName:                              public,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      public,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": public,
	}
}
