package ratelimit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestAdmitter(t *testing.T) (*Admitter, *Quota) {
	t.Helper()
	rdb := redisClient(t)
	l, _, _ := newTestLimiter(t, rdb, Config{})
	q, _, _ := newTestQuota(t, rdb, QuotaConfig{})
	a, err := NewAdmitter(l, q)
	require.NoError(t, err)
	return a, q
}

// TestAdmitAccuracy: the script's GCRA admits burst + rate × elapsed events
// to a client sending at 5x the rate, within 10 %, and tells each partial
// decision when the next event fits.
func TestAdmitAccuracy(t *testing.T) {
	t.Parallel()
	a, _ := newTestAdmitter(t)
	adm := Admission{Requests: Limit{Rate: 1000, Burst: 1000}, Events: Limit{Rate: 1000, Burst: 2000}, N: 50}
	_, err := a.Admit(t.Context(), "warmup", time.Now(), adm) // load the script
	require.NoError(t, err)

	var accepted int
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		res, err := a.Admit(t.Context(), "acme", time.Now(), adm)
		require.NoError(t, err)
		require.False(t, res.Events.Local)
		require.Equal(t, 1, res.Request.Allowed)
		require.Equal(t, res.Events.Allowed, res.Quota.Granted, "no quota: every event that fits the rate is admitted")
		if res.Events.Allowed < adm.N {
			require.Positive(t, res.Events.RetryAfter)
		}
		accepted += res.Quota.Granted
		<-tick.C
	}
	elapsed := time.Since(start).Seconds()
	want := 2000 + 1000*elapsed
	t.Logf("admitted %d in %.2fs, want about %.0f", accepted, elapsed, want)
	require.InEpsilon(t, want, float64(accepted), 0.10)
}

// TestAdmitRequestRateRefusesTheBatch: over the request rate, nothing else
// is taken: the events bucket and the quota are untouched.
func TestAdmitRequestRateRefusesTheBatch(t *testing.T) {
	t.Parallel()
	a, q := newTestAdmitter(t)
	now := time.Now()
	adm := Admission{Requests: Limit{Rate: 0.001, Burst: 2}, Events: Limit{Rate: 1, Burst: 100}, N: 10, QuotaHard: 1000}
	for range 2 {
		res, err := a.Admit(t.Context(), "acme", now, adm)
		require.NoError(t, err)
		require.Equal(t, 1, res.Request.Allowed)
		require.Equal(t, 10, res.Quota.Granted)
	}
	res, err := a.Admit(t.Context(), "acme", now, adm)
	require.NoError(t, err)
	require.Zero(t, res.Request.Allowed)
	require.Greater(t, res.Request.RetryAfter, 10*time.Minute, "one request per 1,000 s")
	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 20, used, "the refused batch counted nothing")
	tat, err := a.q.rdb.Get(t.Context(), a.l.cfg.KeyPrefix+"acme:adm:events").Float64()
	require.NoError(t, err)
	nowMicros := float64(time.Now().UnixMicro() - tatEpochMicros)
	require.InDelta(t, 20e6, tat-nowMicros, 1e6, "the events bucket holds the 20 admitted events (1/s), no more")
}

// TestAdmitQuota: the quota grants what remains; events it refuses take no
// rate; usage is the quota's, visible to MonthlyEvents and Refund.
func TestAdmitQuota(t *testing.T) {
	t.Parallel()
	a, q := newTestAdmitter(t)
	now := time.Now()
	adm := Admission{Requests: Limit{Rate: 100, Burst: 100}, Events: Limit{Rate: 1, Burst: 100}, N: 30, QuotaHard: 50}
	res, err := a.Admit(t.Context(), "acme", now, adm)
	require.NoError(t, err)
	require.Equal(t, 30, res.Quota.Granted)
	require.EqualValues(t, 30, res.Quota.Used)
	res, err = a.Admit(t.Context(), "acme", now, adm)
	require.NoError(t, err)
	require.Equal(t, 30, res.Events.Allowed, "the rate allows all")
	require.Equal(t, 20, res.Quota.Granted, "the quota only 20")
	start, end := res.Quota.PeriodStart, res.Quota.PeriodEnd
	require.Equal(t, 1, start.Day())
	require.True(t, end.After(now))

	require.NoError(t, q.Refund(t.Context(), "acme", start, 5))
	used, err := q.MonthlyEvents(t.Context(), "acme", now)
	require.NoError(t, err)
	require.EqualValues(t, 45, used)

	res, err = a.Admit(t.Context(), "acme", now, Admission{Requests: adm.Requests, Events: adm.Events, N: 100})
	require.NoError(t, err)
	require.Equal(t, 50, res.Events.Allowed, "100 - 50 taken by the admitted events")
}

func TestAdmitInvalidArguments(t *testing.T) {
	t.Parallel()
	a, _ := newTestAdmitter(t)
	good := Admission{Requests: Limit{Rate: 1, Burst: 1}, Events: Limit{Rate: 1, Burst: 1}, N: 1}
	for name, adm := range map[string]Admission{
		"zero rate":      {Requests: Limit{Rate: 0, Burst: 1}, Events: good.Events, N: 1},
		"zero burst":     {Requests: good.Requests, Events: Limit{Rate: 1}, N: 1},
		"negative n":     {Requests: good.Requests, Events: good.Events, N: -1},
		"negative quota": {Requests: good.Requests, Events: good.Events, N: 1, QuotaHard: -1},
	} {
		_, err := a.Admit(t.Context(), "acme", time.Now(), adm)
		require.ErrorIs(t, err, ErrInvalidArgument, name)
	}
	_, err := a.Admit(t.Context(), "Not A Tenant", time.Now(), good)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewAdmitter(nil, nil)
	require.Error(t, err)
}
