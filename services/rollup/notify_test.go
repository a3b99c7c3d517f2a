package rollup_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

const (
	mNotifyFailures = "abacus_rollup_notify_failures_total"
	mNotified       = "abacus_rollup_notified_buckets_total"
)

var minute = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

func bucket(tenant tenancy.ID, typ string, m int) postgres.ChangedBucket {
	return postgres.ChangedBucket{Tenant: tenant, Type: typ, Bucket: minute.Add(time.Duration(m) * time.Minute)}
}

func TestEncodeChanges(t *testing.T) {
	t.Parallel()
	many := func(n int, typ func(i int) string) []postgres.ChangedBucket {
		out := make([]postgres.ChangedBucket, n)
		for i := range out {
			out[i] = bucket("acme", typ(i), i)
		}
		return out
	}
	tests := []struct {
		name     string
		changed  []postgres.ChangedBucket
		messages int    // how many messages
		wantErr  string // substring; the valid buckets are still encoded
		want     []postgres.ChangedBucket
	}{
		{
			name:     "one bucket",
			changed:  []postgres.ChangedBucket{bucket("acme", "page_view", 0)},
			messages: 1,
		},
		{
			name: "unsorted, repeated, several types",
			changed: []postgres.ChangedBucket{
				bucket("acme", "page_view", 2), bucket("acme", "checkout", 0), bucket("acme", "page_view", 0),
				bucket("acme", "page_view", 2),
			},
			messages: 1,
			want: []postgres.ChangedBucket{
				bucket("acme", "checkout", 0), bucket("acme", "page_view", 0), bucket("acme", "page_view", 2),
			},
		},
		{
			name:     "split by count",
			changed:  many(2500, func(int) string { return "page_view" }),
			messages: 3,
		},
		{
			name:     "split by size",
			changed:  many(600, func(i int) string { return fmt.Sprintf("%s-%03d", strings.Repeat("t", 64), i) }),
			messages: 2,
		},
		{
			name:     "nothing",
			messages: 0,
		},
		{
			name: "over-long type left out",
			changed: []postgres.ChangedBucket{
				bucket("acme", strings.Repeat("x", rollup.MaxChangeTypeBytes+1), 0), bucket("acme", "page_view", 1),
			},
			messages: 1,
			wantErr:  "left out 1 buckets",
			want:     []postgres.ChangedBucket{bucket("acme", "page_view", 1)},
		},
		{
			name: "buckets readers would refuse left out",
			changed: []postgres.ChangedBucket{
				{Tenant: "acme", Type: "page_view", Bucket: minute.Add(time.Second)},
				{Tenant: "acme", Type: "page_view", Bucket: minute.Add(time.Millisecond)},
				{Tenant: "acme", Type: "page_view", Bucket: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
				{Tenant: "acme", Type: "", Bucket: minute},
				{Tenant: "acme", Type: "bad\xff", Bucket: minute},
				bucket("acme", "page_view", 1),
			},
			messages: 1,
			wantErr:  "left out 5 buckets",
			want:     []postgres.ChangedBucket{bucket("acme", "page_view", 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msgs, err := rollup.EncodeChanges("acme", tt.changed)
			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, rollup.ErrInvalidChange)
				require.ErrorContains(t, err, tt.wantErr)
			}
			require.Equal(t, tt.messages, len(msgs), "messages")
			var got []postgres.ChangedBucket
			for _, m := range msgs {
				require.LessOrEqual(t, len(m), rollup.MaxChangeMessageBytes)
				tenant, buckets, err := rollup.DecodeChanges(m)
				require.NoError(t, err)
				require.Equal(t, tenancy.ID("acme"), tenant)
				require.LessOrEqual(t, len(buckets), rollup.MaxChangesPerMessage)
				got = append(got, buckets...)
			}
			want := tt.want
			if want == nil {
				want = tt.changed
			}
			require.ElementsMatch(t, want, got)
		})
	}

	_, err := rollup.EncodeChanges("acme", []postgres.ChangedBucket{bucket("globex", "page_view", 0)})
	require.ErrorIs(t, err, rollup.ErrInvalidChange, "another tenant's bucket")
	_, err = rollup.EncodeChanges("Not A Tenant", []postgres.ChangedBucket{bucket("Not A Tenant", "page_view", 0)})
	require.ErrorIs(t, err, rollup.ErrInvalidChange, "an invalid tenant ID")
}

// TestChangeMessageFormat pins the documented wire format.
func TestChangeMessageFormat(t *testing.T) {
	t.Parallel()
	msgs, err := rollup.EncodeChanges("acme", []postgres.ChangedBucket{
		bucket("acme", "page_view", 1), bucket("acme", "checkout", 0), bucket("acme", "page_view", 0),
	})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.JSONEq(t, fmt.Sprintf(`{"v":1,"tenant_id":"acme","changes":[
		{"event_type":"checkout","buckets":[%[1]d]},
		{"event_type":"page_view","buckets":[%[1]d,%[2]d]}]}`, minute.Unix(), minute.Unix()+60), string(msgs[0]))
	require.Equal(t, "abacus:changes:acme", rollup.ChangesChannel("acme"))
}

func TestDecodeChanges_Refuses(t *testing.T) {
	t.Parallel()
	s := minute.Unix()
	tests := []struct {
		name, data, want string
	}{
		{"not JSON", `{"v":1,`, "unexpected end"},
		{"too large", `{"v":1,"x":"` + strings.Repeat("a", rollup.MaxChangeMessageBytes) + `"}`, "bytes, more than"},
		{"unknown version", `{"v":2,"tenant_id":"acme","changes":[]}`, "version 2"},
		{"invalid tenant", `{"v":1,"tenant_id":"ACME","changes":[{"event_type":"a","buckets":[` + fmt.Sprint(s) + `]}]}`, "invalid tenant"},
		{"no changes", `{"v":1,"tenant_id":"acme","changes":[]}`, "no changes"},
		{"empty type", `{"v":1,"tenant_id":"acme","changes":[{"event_type":"","buckets":[` + fmt.Sprint(s) + `]}]}`, "event type is empty"},
		{"no buckets", `{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[]}]}`, "no buckets"},
		{"types out of order", fmt.Sprintf(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"b","buckets":[%d]},{"event_type":"a","buckets":[%d]}]}`, s, s), "not in ascending order"},
		{"type twice", fmt.Sprintf(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[%d]},{"event_type":"a","buckets":[%d]}]}`, s, s+60), "not in ascending order"},
		{"not a minute", fmt.Sprintf(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[%d]}]}`, s+1), "not the start of a minute"},
		{"out of range", `{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[-62135596860]}]}`, "not the start of a minute in years"},
		{"buckets out of order", fmt.Sprintf(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[%d,%d]}]}`, s+60, s), "buckets are not in ascending order"},
		{"too many buckets", tooManyBuckets(), "more than 1000 buckets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := rollup.DecodeChanges([]byte(tt.data))
			require.ErrorIs(t, err, rollup.ErrInvalidChange)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func tooManyBuckets() string {
	buckets := make([]string, rollup.MaxChangesPerMessage+1)
	for i := range buckets {
		buckets[i] = fmt.Sprint(minute.Unix() + int64(60*i))
	}
	return `{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[` + strings.Join(buckets, ",") + `]}]}`
}

// FuzzDecodeChanges: decoding never panics, and whatever decodes encodes
// back into messages that decode to the same buckets.
func FuzzDecodeChanges(f *testing.F) {
	seed, err := rollup.EncodeChanges("acme", []postgres.ChangedBucket{
		bucket("acme", "page_view", 0), bucket("acme", "page_view", 3), bucket("acme", "checkout", 1),
	})
	require.NoError(f, err)
	f.Add(seed[0])
	f.Add([]byte(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"a","buckets":[0]}]}`))
	f.Add([]byte(`{"v":1,"tenant_id":"acme","changes":[{"event_type":"\u00e9","buckets":[60,120]}],"extra":true}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tenant, buckets, err := rollup.DecodeChanges(data)
		if err != nil {
			require.ErrorIs(t, err, rollup.ErrInvalidChange)
			return
		}
		require.NotEmpty(t, buckets)
		require.LessOrEqual(t, len(buckets), rollup.MaxChangesPerMessage)
		msgs, err := rollup.EncodeChanges(tenant, buckets)
		require.NoError(t, err)
		var again []postgres.ChangedBucket
		for _, m := range msgs {
			tenant2, b, err := rollup.DecodeChanges(m)
			require.NoError(t, err)
			require.Equal(t, tenant, tenant2)
			again = append(again, b...)
		}
		require.Equal(t, buckets, again)
	})
}

// TestRedisNotifier_PublishesCommittedBuckets: after a batch commits, a
// subscriber of each tenant's channel receives exactly that tenant's
// changed buckets.
func TestRedisNotifier_PublishesCommittedBuckets(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	// Pub/sub channels are shared by every database of the server, so
	// these tenants appear in no other test.
	acme, globex := tenancy.ID("notify-acme"), tenancy.ID("notify-globex")
	sub := rdb.Subscribe(t.Context(), rollup.ChangesChannel(acme), rollup.ChangesChannel(globex))
	t.Cleanup(func() { sub.Close() })
	_, err := sub.Receive(t.Context()) // the subscription is in place
	require.NoError(t, err)

	notifier, err := rollup.NewRedisNotifier(rdb)
	require.NoError(t, err)
	env := rolluptest.NewEnv(t, 2)
	at := func(id, typ string, m int) *ingestv1.Event {
		return &ingestv1.Event{EventId: id, Type: typ, Timestamp: timestamppb.New(minute.Add(time.Duration(m)*time.Minute + time.Second))}
	}
	env.Produce(t, 0, acme, at("a1", "page_view", 0), at("a2", "page_view", 0), at("a3", "page_view", 2), at("a4", "checkout", 0))
	env.Produce(t, 1, globex, at("g1", "page_view", 5))
	r := env.Start(t, rollup.Config{Notifier: notifier}, nil)

	want := map[string][]postgres.ChangedBucket{
		rollup.ChangesChannel(acme):   {bucket(acme, "checkout", 0), bucket(acme, "page_view", 0), bucket(acme, "page_view", 2)},
		rollup.ChangesChannel(globex): {bucket(globex, "page_view", 5)},
	}
	got := map[string][]postgres.ChangedBucket{}
	ctx, cancel := context.WithTimeout(t.Context(), rolluptest.Wait)
	defer cancel()
	for len(got[rollup.ChangesChannel(acme)]) < 3 || len(got[rollup.ChangesChannel(globex)]) < 1 {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err, "received so far: %v", got)
		tenant, buckets, err := rollup.DecodeChanges([]byte(msg.Payload))
		require.NoError(t, err)
		require.Equal(t, msg.Channel, rollup.ChangesChannel(tenant), "a tenant's changes on its own channel")
		got[msg.Channel] = append(got[msg.Channel], buckets...)
	}
	for ch := range got {
		slices.SortFunc(got[ch], func(a, b postgres.ChangedBucket) int {
			return cmp.Or(strings.Compare(a.Type, b.Type), a.Bucket.Compare(b.Bucket))
		})
	}
	require.Equal(t, want, got)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 4.0, r.Metric(mNotified))
	}, rolluptest.Wait, rolluptest.Tick)
	require.Zero(t, r.Metric(mNotifyFailures))
}

// TestConsumer_NotifierNeverHoldsUpBatches: a notifier that hangs, fails,
// or cannot reach Redis never delays or fails a batch; its failures are
// counted.
func TestConsumer_NotifierNeverHoldsUpBatches(t *testing.T) {
	t.Parallel()
	unreachable, err := rollup.NewRedisNotifier(redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
	}))
	require.NoError(t, err)
	tests := []struct {
		name     string
		notifier rollup.Notifier
		failures bool // whether its failures show before the test ends
	}{
		{name: "hangs", notifier: &hangingNotifier{}},
		{name: "fails", notifier: failingNotifier{}, failures: true},
		{name: "redis unreachable", notifier: unreachable, failures: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := rolluptest.NewEnv(t, 1)
			r := env.Start(t, rollup.Config{Notifier: tt.notifier, MaxPollRecords: 1}, nil)
			want := map[tenancy.ID]int64{}
			for i := range 5 {
				env.Produce(t, 0, "acme", rolluptest.Events(fmt.Sprintf("b%d", i), 3)...)
				want["acme"] += 3
				env.RequireCounts(t, want)
			}
			if tt.failures {
				require.EventuallyWithT(t, func(c *assert.CollectT) {
					assert.GreaterOrEqual(c, r.Metric(mNotifyFailures, "reason", "publish"), 1.0)
				}, rolluptest.Wait, rolluptest.Tick)
			}
			require.Zero(t, r.Metric(mNotified))
			require.False(t, r.Returned())
		})
	}
}

// hangingNotifier blocks every Notify until its context ends.
type hangingNotifier struct{}

func (*hangingNotifier) Notify(ctx context.Context, _ []postgres.ChangedBucket) error {
	<-ctx.Done()
	return ctx.Err()
}

type failingNotifier struct{}

func (failingNotifier) Notify(context.Context, []postgres.ChangedBucket) error {
	return errors.New("notification backend unavailable")
}

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(devstacktest.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}
