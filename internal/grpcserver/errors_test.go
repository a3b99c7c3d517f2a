package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, connErr := pgconn.Connect(t.Context(), "postgres://abacus@127.0.0.1:1/abacus?connect_timeout=2")
	require.Error(t, connErr)
	secretish := errors.New("pq: password authentication failed for user abacus at 10.0.0.7")
	tests := []struct {
		name      string
		err       error
		code      codes.Code
		msg       string
		retryInfo bool
	}{
		{"nil", nil, codes.OK, "", false},
		{"status passes through", status.Error(codes.OutOfRange, "too far"), codes.OutOfRange, "too far", false},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "request canceled", false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "request deadline exceeded", false},
		{"not found keeps what and why", fmt.Errorf("admin: get tenant: %w", fmt.Errorf("postgres: get tenant \"acme\": %w", postgres.ErrNotFound)), codes.NotFound, `get tenant "acme": not found`, false},
		{"already exists", fmt.Errorf("create tenant: %w", postgres.ErrAlreadyExists), codes.AlreadyExists, "create tenant: already exists", false},
		{"failed precondition", fmt.Errorf("rotate api key: %w: the key was revoked", postgres.ErrFailedPrecondition), codes.FailedPrecondition, "failed precondition: the key was revoked", false},
		{"store invalid argument", fmt.Errorf("x: %w", postgres.ErrInvalidArgument), codes.InvalidArgument, "x: invalid argument", false},
		{"no tenant", tenancy.ErrNoTenant, codes.Unauthenticated, "missing credentials", false},
		{"event log unavailable", fmt.Errorf("produce: %w", eventlog.ErrUnavailable), codes.Unavailable, "event log unavailable", true},
		{"database unreachable", fmt.Errorf("list tenants: %w", connErr), codes.Unavailable, "database unavailable", true},
		{"unknown is masked", secretish, codes.Internal, "internal error", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ToStatus(t.Context(), logger, "/test/Method", tc.err)
			st := status.Convert(err)
			require.Equal(t, tc.code, st.Code())
			require.Contains(t, st.Message(), tc.msg)
			require.NotContains(t, st.Message(), "10.0.0.7", "internal details never reach the client")
			var hasRetry bool
			for _, d := range st.Details() {
				if _, ok := d.(*errdetails.RetryInfo); ok {
					hasRetry = true
				}
			}
			require.Equal(t, tc.retryInfo, hasRetry)
		})
	}
}
