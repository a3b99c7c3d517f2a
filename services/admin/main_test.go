package admin_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/admin"
	"github.com/abacus-analytics/abacus/store/postgres"
)

func TestMain(m *testing.M) {
	devstacktest.Main(m)
}

var _ admin.Store = (*postgres.DB)(nil)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a service over a migrated database of its own.
type env struct {
	svc  *admin.Service
	db   *postgres.DB
	logs *syncBuffer
}

func newEnv(t *testing.T) env {
	t.Helper()
	db, err := postgres.Open(t.Context(), postgres.Config{URL: devstacktest.Postgres(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))

	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := admin.New(admin.Config{}, db, logger, prometheus.NewRegistry())
	require.NoError(t, err)
	return env{svc: svc, db: db, logs: logs}
}

// requireInvalidArgument checks that err is an INVALID_ARGUMENT status whose
// BadRequest detail names field.
func requireInvalidArgument(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "want a gRPC status, got %v", err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(t, fields, field, "BadRequest fields of %q", st.Message())
}
