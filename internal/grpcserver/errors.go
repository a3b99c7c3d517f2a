package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// errorDomain is the ErrorInfo domain of every error Abacus returns.
const errorDomain = "abacus.dev"

// unavailableRetry is the RetryInfo delay suggested when a dependency is down.
const unavailableRetry = time.Second

// ToStatus is the one place that turns the domain errors handlers return into gRPC statuses with
// details. Errors that already carry a status pass through; unknown errors become a masked
// INTERNAL and are logged once, here, with the method.
func ToStatus(ctx context.Context, logger *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request deadline exceeded")
	case errors.Is(err, postgres.ErrNotFound):
		return withDetails(codes.NotFound, clientMessage(err), &errdetails.ErrorInfo{Reason: "NOT_FOUND", Domain: errorDomain})
	case errors.Is(err, postgres.ErrAlreadyExists):
		return withDetails(codes.AlreadyExists, clientMessage(err), &errdetails.ErrorInfo{Reason: "ALREADY_EXISTS", Domain: errorDomain})
	case errors.Is(err, postgres.ErrFailedPrecondition):
		return withDetails(codes.FailedPrecondition, clientMessage(err), &errdetails.ErrorInfo{Reason: "FAILED_PRECONDITION", Domain: errorDomain})
	case errors.Is(err, postgres.ErrInvalidArgument):
		return withDetails(codes.InvalidArgument, clientMessage(err), &errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: errorDomain})
	case errors.Is(err, tenancy.ErrNoTenant):
		return status.Error(codes.Unauthenticated, "missing credentials: send authorization: Bearer <api key>")
	case errors.Is(err, eventlog.ErrUnavailable):
		logger.WarnContext(ctx, "event log unavailable", "rpc.method", method, "error", err)
		return withDetails(codes.Unavailable, "event log unavailable: nothing was accepted, retry the same events",
			&errdetails.ErrorInfo{Reason: "EVENT_LOG_UNAVAILABLE", Domain: errorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(unavailableRetry)})
	case isConnectionError(err):
		logger.WarnContext(ctx, "database unavailable", "rpc.method", method, "error", err)
		return withDetails(codes.Unavailable, "database unavailable, retry later",
			&errdetails.ErrorInfo{Reason: "DATABASE_UNAVAILABLE", Domain: errorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(unavailableRetry)})
	}
	logger.ErrorContext(ctx, "internal error", "rpc.method", method, "error", err)
	return status.Error(codes.Internal, "internal error")
}

// clientMessage keeps the last two parts of a wrapped error chain ("get tenant \"acme\": not
// found"): what failed and why, without the internal layers the error passed through.
func clientMessage(err error) string {
	parts := strings.Split(err.Error(), ": ")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, ": ")
}

// isConnectionError reports whether err means PostgreSQL could not be reached (rather than a
// statement failing), which callers should retry.
func isConnectionError(err error) bool {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	return pgconn.SafeToRetry(err)
}

func withDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	if withDetails, err := st.WithDetails(details...); err == nil {
		return withDetails.Err()
	}
	return st.Err()
}

// errorUnaryInterceptor maps handler errors with ToStatus.
func errorUnaryInterceptor(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, ToStatus(ctx, logger, info.FullMethod, err)
		}
		return resp, nil
	}
}

// errorStreamInterceptor maps stream handler errors with ToStatus.
func errorStreamInterceptor(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ToStatus(ss.Context(), logger, info.FullMethod, handler(srv, ss))
	}
}
