package postgres_test

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestLoadLimitOverrides(t *testing.T) {
	t.Parallel()
	db := newDB(t)

	acme := tenancy.LimitOverrides{
		EventsPerSecond:     ptr(250.5),
		MaxBatchEvents:      ptr(500),
		TimestampPastWindow: ptr(36 * time.Hour),
		KafkaShards:         ptr(8),
	}
	globex := tenancy.LimitOverrides{MonthlyEventQuota: ptr(int64(1_000_000))}
	for _, tn := range []postgres.Tenant{
		{ID: "acme", Limits: acme},
		{ID: "globex", Limits: globex, State: postgres.TenantSuspended},
		{ID: "initech"}, // no overrides
	} {
		_, err := db.CreateTenant(t.Context(), tn)
		require.NoError(t, err)
	}
	// Overrides that were set and then all removed leave no entry either.
	_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "umbrella", Limits: globex})
	require.NoError(t, err)
	_, err = db.UpdateTenant(t.Context(), "umbrella", postgres.TenantUpdate{Limits: &tenancy.LimitOverrides{}})
	require.NoError(t, err)

	got, err := db.LoadLimitOverrides(t.Context())
	require.NoError(t, err)
	require.Equal(t, map[tenancy.ID]tenancy.LimitOverrides{"acme": acme, "globex": globex}, got)

	// What the store loads is what tenancy.Overrides serves.
	ov, err := tenancy.NewOverrides(tenancy.OverridesConfig{Defaults: tenancy.DefaultLimits()}, db, nil, nil)
	require.NoError(t, err)
	require.NoError(t, ov.Reload(t.Context()))
	require.Equal(t, 500, ov.MaxBatchEvents("acme"))
	require.Equal(t, 8, ov.KafkaShards("acme"))
	require.Equal(t, tenancy.DefaultLimits(), ov.For("initech"))
}

func TestLoadLimitOverridesSkipsUndecodableRows(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, id := range []tenancy.ID{"acme", "globex"} {
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id, Limits: tenancy.LimitOverrides{KafkaShards: ptr(2)}})
		require.NoError(t, err)
	}
	// Written by hand, not by this package: a limit of the wrong type.
	_, err := db.Pool().Exec(t.Context(), `UPDATE tenants SET limits = '{"kafka_shards": "many"}' WHERE tenant_id = 'globex'`)
	require.NoError(t, err)

	got, err := db.LoadLimitOverrides(t.Context())
	require.NoError(t, err)
	require.Equal(t, map[tenancy.ID]tenancy.LimitOverrides{"acme": {KafkaShards: ptr(2)}}, got)

	_, err = db.GetTenant(t.Context(), "globex")
	require.Error(t, err, "reading the tenant itself reports the bad document")
}

func TestTenantLimitsRoundTrip(t *testing.T) {
	t.Parallel()
	db := newDB(t)

	all := tenancy.LimitOverrides{
		EventsPerSecond:        ptr(1e6),
		EventsBurst:            ptr(int64(2_000_000)),
		RequestsPerSecond:      ptr(0.5),
		MaxBatchEvents:         ptr(1),
		MaxEventBytes:          ptr(460800),
		MaxProperties:          ptr(0),
		TimestampPastWindow:    ptr(366 * 24 * time.Hour),
		TimestampFutureWindow:  ptr(time.Duration(0)),
		MonthlyEventQuota:      ptr(int64(0)),
		MonthlyEventQuotaSoft:  ptr(int64(1) << 62),
		QueryRequestsPerSecond: ptr(3.25),
		KafkaShards:            ptr(256),
		RawRetention:           ptr(400 * 24 * time.Hour),
		RollupRetention:        ptr(20 * 8766 * time.Hour),
	}
	created, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme", Limits: all})
	require.NoError(t, err)
	require.Equal(t, all, created.Limits, "zero values are overrides too, kept apart from unset")

	got, err := db.GetTenant(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, all, got.Limits)

	tests := []struct {
		name   string
		update postgres.TenantUpdate
		want   tenancy.LimitOverrides
	}{
		{"other fields keep the limits", postgres.TenantUpdate{DisplayName: ptr("Acme")}, all},
		{"replace all", postgres.TenantUpdate{Limits: &tenancy.LimitOverrides{EventsBurst: ptr(int64(7))}},
			tenancy.LimitOverrides{EventsBurst: ptr(int64(7))}},
		{"remove all", postgres.TenantUpdate{Limits: &tenancy.LimitOverrides{}}, tenancy.LimitOverrides{}},
	}
	for _, tt := range tests {
		// Sequential: each case starts from the previous one's result.
		t.Run(tt.name, func(t *testing.T) {
			updated, err := db.UpdateTenant(t.Context(), "acme", tt.update)
			require.NoError(t, err)
			require.Equal(t, tt.want, updated.Limits)
			listed, err := db.ListTenants(t.Context(), 10, "")
			require.NoError(t, err)
			require.Len(t, listed, 1)
			require.Equal(t, tt.want, listed[0].Limits)
		})
	}

	_, err = db.UpdateTenant(t.Context(), "acme", postgres.TenantUpdate{
		Limits: &tenancy.LimitOverrides{EventsPerSecond: ptr(posInf())}})
	require.ErrorIs(t, err, postgres.ErrInvalidArgument, "a non-finite number cannot be stored")
	_, err = db.CreateTenant(t.Context(), postgres.Tenant{ID: "globex", Limits: tenancy.LimitOverrides{EventsPerSecond: ptr(nan())}})
	require.ErrorIs(t, err, postgres.ErrInvalidArgument)
}

func TestUpdateTenantFunc(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	before, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme", DisplayName: "Acme",
		Limits: tenancy.LimitOverrides{KafkaShards: ptr(4)}})
	require.NoError(t, err)

	t.Run("changes what fn changes", func(t *testing.T) {
		got, err := db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
			require.Equal(t, before.Limits, tn.Limits, "fn sees the stored row")
			tn.ID = "ignored"
			tn.DisplayName = "Acme Corp"
			tn.Limits.MaxProperties = ptr(10)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, tenancy.ID("acme"), got.ID)
		require.Equal(t, "Acme Corp", got.DisplayName)
		require.Equal(t, tenancy.LimitOverrides{KafkaShards: ptr(4), MaxProperties: ptr(10)}, got.Limits)
		require.True(t, got.UpdatedAt.After(before.UpdatedAt))
		stored, err := db.GetTenant(t.Context(), "acme")
		require.NoError(t, err)
		require.Equal(t, got, stored)
	})

	t.Run("an error from fn is returned unchanged and nothing is written", func(t *testing.T) {
		stored, err := db.GetTenant(t.Context(), "acme")
		require.NoError(t, err)
		refused := errors.New("refused")
		_, err = db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
			tn.DisplayName = "changed"
			tn.Limits = tenancy.LimitOverrides{}
			return refused
		})
		require.Equal(t, refused, err)
		after, err := db.GetTenant(t.Context(), "acme")
		require.NoError(t, err)
		require.Equal(t, stored, after)
	})

	t.Run("invalid state", func(t *testing.T) {
		_, err := db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
			tn.State = "gone"
			return nil
		})
		require.ErrorIs(t, err, postgres.ErrInvalidArgument)
	})

	t.Run("missing tenant", func(t *testing.T) {
		called := false
		_, err := db.UpdateTenantFunc(t.Context(), "nobody", func(*postgres.Tenant) error {
			called = true
			return nil
		})
		require.ErrorIs(t, err, postgres.ErrNotFound)
		require.False(t, called)
	})
}

// Two writers change different limits of the same tenant at the same time,
// each by reading the overrides, changing its own field and writing them all
// back. The first holds its transaction open until the second is waiting for
// the tenant's row lock, so the second must read the first's result; without
// the lock it would read a stale copy and overwrite the first's field.
func TestUpdateTenantFuncConcurrentFieldsSurvive(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme"})
	require.NoError(t, err)

	firstRead := make(chan struct{})
	release := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
			close(firstRead)
			<-release
			tn.Limits.MaxBatchEvents = ptr(100)
			return nil
		})
		firstDone <- err
	}()
	<-firstRead

	secondDone := make(chan error, 1)
	var secondSaw tenancy.LimitOverrides
	go func() {
		_, err := db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
			secondSaw = tn.Limits
			tn.Limits.EventsBurst = ptr(int64(1000))
			return nil
		})
		secondDone <- err
	}()
	require.Eventually(t, func() bool {
		var waiting int
		err := db.Pool().QueryRow(t.Context(), `
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 5*time.Millisecond, "the second writer waits for the first's row lock")

	close(release)
	require.NoError(t, <-firstDone)
	require.NoError(t, <-secondDone)
	require.Equal(t, tenancy.LimitOverrides{MaxBatchEvents: ptr(100)}, secondSaw,
		"the second writer read the first one's result")

	got, err := db.GetTenant(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, tenancy.LimitOverrides{MaxBatchEvents: ptr(100), EventsBurst: ptr(int64(1000))}, got.Limits)
}

// Many writers, each setting a different limit at once: every one survives.
func TestUpdateTenantFuncManyConcurrentWriters(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme"})
	require.NoError(t, err)

	want := tenancy.LimitOverrides{
		EventsPerSecond:        ptr(1.5),
		EventsBurst:            ptr(int64(2)),
		RequestsPerSecond:      ptr(3.5),
		MaxBatchEvents:         ptr(4),
		MaxEventBytes:          ptr(500),
		MaxProperties:          ptr(6),
		TimestampPastWindow:    ptr(7 * time.Hour),
		TimestampFutureWindow:  ptr(8 * time.Minute),
		MonthlyEventQuota:      ptr(int64(9)),
		MonthlyEventQuotaSoft:  ptr(int64(10)),
		QueryRequestsPerSecond: ptr(11.5),
		KafkaShards:            ptr(12),
	}
	setters := []func(o *tenancy.LimitOverrides){
		func(o *tenancy.LimitOverrides) { o.EventsPerSecond = want.EventsPerSecond },
		func(o *tenancy.LimitOverrides) { o.EventsBurst = want.EventsBurst },
		func(o *tenancy.LimitOverrides) { o.RequestsPerSecond = want.RequestsPerSecond },
		func(o *tenancy.LimitOverrides) { o.MaxBatchEvents = want.MaxBatchEvents },
		func(o *tenancy.LimitOverrides) { o.MaxEventBytes = want.MaxEventBytes },
		func(o *tenancy.LimitOverrides) { o.MaxProperties = want.MaxProperties },
		func(o *tenancy.LimitOverrides) { o.TimestampPastWindow = want.TimestampPastWindow },
		func(o *tenancy.LimitOverrides) { o.TimestampFutureWindow = want.TimestampFutureWindow },
		func(o *tenancy.LimitOverrides) { o.MonthlyEventQuota = want.MonthlyEventQuota },
		func(o *tenancy.LimitOverrides) { o.MonthlyEventQuotaSoft = want.MonthlyEventQuotaSoft },
		func(o *tenancy.LimitOverrides) { o.QueryRequestsPerSecond = want.QueryRequestsPerSecond },
		func(o *tenancy.LimitOverrides) { o.KafkaShards = want.KafkaShards },
	}
	start := make(chan struct{})
	errs := make(chan error, len(setters))
	var wg sync.WaitGroup
	for _, set := range setters {
		wg.Go(func() {
			<-start
			_, err := db.UpdateTenantFunc(t.Context(), "acme", func(tn *postgres.Tenant) error {
				set(&tn.Limits)
				return nil
			})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := db.GetTenant(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, want, got.Limits)
}

func posInf() float64 { return math.Inf(1) }

func nan() float64 { return math.NaN() }
