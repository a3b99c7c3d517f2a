package query_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestMain(m *testing.M) {
	devstacktest.Main(m)
}

var _ query.Store = (*postgres.DB)(nil)

// t0 is a minute-aligned instant that is not hour-aligned; tests build event
// times from it.
var t0 = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

// clock is a settable time source for Config.Now.
type clock struct{ unixNano atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)     { c.unixNano.Store(t.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.unixNano.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.unixNano.Add(int64(d)) }

// env is a service over a migrated database of its own.
type env struct {
	svc *query.Service
	db  *postgres.DB
	reg *prometheus.Registry
}

func newEnv(t *testing.T, cfg query.Config) env {
	t.Helper()
	db, err := postgres.Open(t.Context(), postgres.Config{URL: devstacktest.Postgres(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))
	reg := prometheus.NewRegistry()
	svc, err := query.New(cfg, db, nil, reg)
	require.NoError(t, err)
	return env{svc: svc, db: db, reg: reg}
}

// event is an event to store: its tenant, type and time.
type event struct {
	tenant tenancy.ID
	typ    string
	at     time.Time
}

var eventSeq atomic.Int64

// apply stores events the way the rollup consumer does, each with a fresh ID.
func (e env) apply(t *testing.T, events ...event) {
	t.Helper()
	batch := postgres.Batch{Group: "test", Generation: 1}
	for _, ev := range events {
		batch.Events = append(batch.Events, postgres.Event{
			Tenant:     ev.tenant,
			EventID:    fmt.Sprintf("e-%d", eventSeq.Add(1)),
			Type:       ev.typ,
			Time:       ev.at,
			ReceivedAt: ev.at,
		})
	}
	applied, err := e.db.ApplyBatch(t.Context(), batch)
	require.NoError(t, err)
	require.Equal(t, len(events), applied.Inserted)
}

// requireInvalidArgument checks that err is an INVALID_ARGUMENT status whose
// BadRequest detail names field with a description containing want.
func requireInvalidArgument(t *testing.T, err error, field, want string) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "want a gRPC status, got %v", err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					require.Contains(t, v.GetDescription(), want)
					return
				}
			}
		}
	}
	require.Failf(t, "no BadRequest violation", "want field %q in %v", field, st.Details())
}
