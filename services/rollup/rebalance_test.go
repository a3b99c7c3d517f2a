package rollup_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/rollup/internal/rolluptest"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

const mClaims = "abacus_rollup_partition_claims_total"

// TestConsumer_StaleMemberIsFenced builds the interleaving that generation
// fencing alone cannot refuse. Member A polls a batch and stalls before
// applying it; its heartbeats stop reaching the coordinator (A itself sees
// them answered), so the coordinator expires it and hands every partition
// to B, which reads the same records but has not applied them yet. Then A
// wakes up and commits. Before partitions were claimed on assignment, the
// highest generation stored for them was still A's, so A's late commit was
// accepted; now B's claim has raised it and A's commit is refused.
func TestConsumer_StaleMemberIsFenced(t *testing.T) {
	t.Parallel()
	env := rolluptest.NewEnv(t, 2)
	const group = "stale"
	// One lane: the gate holds a whole poll, both partitions of it.
	cfg := rollup.Config{Group: group, SessionTimeout: 2 * time.Second, RebalanceTimeout: 5 * time.Second, ApplyLanes: 1}
	want := map[tenancy.ID]int64{}
	produce := func(prefix string) {
		env.Produce(t, 0, "acme", rolluptest.Events("a-"+prefix, 5)...)
		env.Produce(t, 1, "globex", rolluptest.Events("g-"+prefix, 4)...)
		want["acme"] += 5
		want["globex"] += 4
	}
	claims := &claimLog{}

	gateA := newGate()
	a := env.Start(t, cfg, &gatedStore{Store: env.DB, gate: gateA, claims: claims})
	produce("1")
	env.RequireCounts(t, want)
	memberA := onlyMember(t, env, group)

	// A polls the next records and stalls before applying them.
	gateA.arm()
	produce("2")
	heldA := gateA.waitHeld(t)

	// A's heartbeats no longer reach the coordinator.
	stopFaking := answerHeartbeats(env.Kafka.Cluster(), memberA)
	t.Cleanup(stopFaking)

	// B joins; the coordinator expires A and gives B both partitions. B
	// claims them, reads the records A holds, and stalls too.
	gateB := newGate()
	gateB.arm()
	b := env.Start(t, cfg, &gatedStore{Store: env.DB, gate: gateB, claims: claims})
	heldB := gateB.waitHeld(t)
	require.Greater(t, heldB.Generation, heldA.Generation, "B holds its batch in a newer generation")
	require.NotEqual(t, memberA, onlyMember(t, env, group), "the coordinator expired A")
	require.True(t, claims.covers(heldB.Generation, partitionsOf(heldA)...),
		"B claimed A's partitions at its generation before applying anything: %v", claims.all())

	// A wakes up and commits the batch it polled in its old generation.
	gateA.open()
	require.ErrorIs(t, gateA.result(t), postgres.ErrFenced, "the stale member's late commit is refused")
	require.Equal(t, map[tenancy.ID]int64{"acme": 5, "globex": 4}, env.Counts(t), "nothing of A's batch committed")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, a.Metric(mFenced), 1.0)
	}, rolluptest.Wait, rolluptest.Tick)

	// B applies the records.
	gateB.open()
	require.NoError(t, gateB.result(t))
	env.RequireCounts(t, want)

	// A's heartbeats reach the coordinator again: it learns it was
	// expired, rejoins and shares the partitions.
	stopFaking()
	env.RequireGroupBalanced(t, group, 2)
	produce("3")
	env.RequireCounts(t, want)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 27.0, a.Metric(mEvents, "result", "inserted")+b.Metric(mEvents, "result", "inserted"))
	}, rolluptest.Wait, rolluptest.Tick)
	require.Zero(t, a.Metric(mEvents, "result", "duplicate")+b.Metric(mEvents, "result", "duplicate"),
		"no record applied twice")
	require.False(t, a.Returned())
	require.False(t, b.Returned())
}

// TestConsumer_RebalanceChurn: while events of 20 tenants stream in, three
// members join and leave the group at random, and a fourth has its
// heartbeats held past the session timeout while it keeps processing. No
// event is counted twice or lost, and the stale member's commit is refused.
func TestConsumer_RebalanceChurn(t *testing.T) {
	t.Parallel()
	events, produceFor := 20_000, 6*time.Second
	if *long {
		events, produceFor = 100_000, 30*time.Second
	}
	env := rolluptest.NewEnv(t, 6)
	const group = "churn"
	cfg := rollup.Config{
		Group: group, SessionTimeout: 2 * time.Second, RebalanceTimeout: 5 * time.Second,
		MaxPollRecords: 20, LagInterval: 200 * time.Millisecond,
	}
	work := rolluptest.NewWorkload(7, 20, events, 40, 10)
	claims := &claimLog{}
	var all runningSet

	// Z, the member that will go stale, runs from the start.
	gateZ := newGate()
	t.Cleanup(gateZ.open)
	z := env.Start(t, cfg, &gatedStore{Store: env.DB, gate: gateZ, claims: claims})
	all.add(z)
	memberZ := onlyMember(t, env, group)

	producer := env.RecordProducer(t)
	produced := make(chan error, 1)
	pause := produceFor * 4 / time.Duration(len(work.Batches))
	go func() {
		produced <- rolluptest.ProduceAll(t.Context(), producer, work.Batches, 4, func() { time.Sleep(pause) })
	}()
	stale := make(chan error, 1)
	go func() { stale <- goStale(env.Kafka.Cluster(), memberZ, gateZ, claims) }()

	// Three members join and leave at random until the events are all
	// produced and Z's story is over.
	slots := make([]*rolluptest.Running, 3)
	began := time.Now()
	var joins, leaves int
	timeout := time.After(3 * time.Minute)
	for step := 0; produced != nil || stale != nil || joins < 3 || leaves < 3; step++ {
		select {
		case err := <-produced:
			require.NoError(t, err)
			produced = nil
			t.Logf("produced at %s", time.Since(began))
		case err := <-stale:
			require.NoError(t, err)
			stale = nil
			t.Logf("stale done at %s", time.Since(began))
		case <-timeout:
			require.FailNow(t, "churn did not finish", "produced: %t, stale member done: %t", produced == nil, stale == nil)
		case <-time.After(time.Duration(200+rand.IntN(600)) * time.Millisecond):
			i := rand.IntN(len(slots))
			if slots[i] == nil {
				slots[i] = env.Start(t, cfg, &gatedStore{Store: env.DB, claims: claims})
				all.add(slots[i])
				joins++
				continue
			}
			slots[i].Stop(t)
			slots[i] = nil
			leaves++
		}
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, z.Metric(mFenced), 1.0, "the stale member saw its commit refused")
	}, rolluptest.Wait, rolluptest.Tick)
	t.Logf("churn over at %s", time.Since(began))
	env.RequireBucketsWithin(t, work.Want(), work.Keys(), 2*time.Minute)
	t.Logf("caught up at %s", time.Since(began))

	inserted := all.metric(mEvents, "result", "inserted")
	duplicates := all.metric(mEvents, "result", "duplicate")
	t.Logf("churn: %d events, %d joins, %d leaves, %d claims, %.0f inserted, %.0f duplicates, %.0f fenced batches",
		work.Distinct(), joins, leaves, len(claims.all()), inserted, duplicates, all.metric(mFenced))
	require.Equal(t, float64(work.Distinct()), inserted, "every event inserted once, across all members")
	require.Zero(t, duplicates, "no record applied twice")
	require.False(t, z.Returned())
}

// goStale turns member z stale while it is processing: after a second it
// holds its next batch at gate, its heartbeats stop reaching the
// coordinator, and once newer generations have claimed its partitions the
// batch is let through. It reports an error unless that late commit is
// refused with ErrFenced; then z's heartbeats reach the coordinator again,
// so it learns it was expired and rejoins.
func goStale(cluster *kfake.Cluster, member string, g *gate, claims *claimLog) error {
	time.Sleep(time.Second)
	g.arm()
	var held postgres.Batch
	select {
	case held = <-g.held:
	case <-time.After(rolluptest.Wait):
		return errors.New("the member never polled a batch to hold")
	}
	stop := answerHeartbeats(cluster, member)
	defer stop()
	defer g.open()
	for deadline := time.Now().Add(rolluptest.Wait); !claims.covers(held.Generation+1, partitionsOf(held)...); {
		if time.Now().After(deadline) {
			return fmt.Errorf("partitions %v held at generation %d were never claimed by a newer one: %v",
				partitionsOf(held), held.Generation, claims.all())
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.open()
	select {
	case err := <-g.outcome:
		if !errors.Is(err, postgres.ErrFenced) {
			return fmt.Errorf("the stale member's late commit returned %v, want ErrFenced", err)
		}
		return nil
	case <-time.After(rolluptest.Wait):
		return errors.New("the held batch did not finish")
	}
}

// gate holds the next ApplyBatch with events, once armed, until opened.
type gate struct {
	armed    atomic.Bool
	held     chan postgres.Batch
	release  chan struct{}
	outcome  chan error
	openOnce sync.Once
}

func newGate() *gate {
	return &gate{held: make(chan postgres.Batch, 1), release: make(chan struct{}), outcome: make(chan error, 1)}
}

func (g *gate) arm() { g.armed.Store(true) }

func (g *gate) open() { g.openOnce.Do(func() { close(g.release) }) }

// waitHeld returns the batch the gate holds.
func (g *gate) waitHeld(t *testing.T) postgres.Batch {
	t.Helper()
	select {
	case b := <-g.held:
		t.Cleanup(g.open)
		return b
	case <-time.After(rolluptest.Wait):
		require.FailNow(t, "no batch reached the gate")
		return postgres.Batch{}
	}
}

// result is what the held ApplyBatch returned once opened.
func (g *gate) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.outcome:
		return err
	case <-time.After(rolluptest.Wait):
		require.FailNow(t, "the held batch did not finish")
		return nil
	}
}

// gatedStore passes ApplyBatch through, holding one batch with events at
// its gate (if any), and records the partition claims that commit.
type gatedStore struct {
	rollup.Store
	gate   *gate
	claims *claimLog
}

func (s *gatedStore) ClaimPartitions(ctx context.Context, group, topic string, generation int32, partitions []int32) (map[int32]int64, error) {
	stored, err := s.Store.ClaimPartitions(ctx, group, topic, generation, partitions)
	if err == nil && s.claims != nil {
		s.claims.add(partitionClaim{generation: generation, topic: topic, partitions: slices.Clone(partitions)})
	}
	return stored, err
}

func (s *gatedStore) ApplyBatch(ctx context.Context, b postgres.Batch) (postgres.Applied, error) {
	if len(b.Events) == 0 || s.gate == nil || !s.gate.armed.CompareAndSwap(true, false) {
		return s.Store.ApplyBatch(ctx, b)
	}
	s.gate.held <- b
	select {
	case <-s.gate.release:
	case <-ctx.Done():
		s.gate.outcome <- ctx.Err()
		return postgres.Applied{}, ctx.Err()
	}
	applied, err := s.Store.ApplyBatch(ctx, b)
	s.gate.outcome <- err
	return applied, err
}

// partitionClaim is one committed ClaimPartitions call.
type partitionClaim struct {
	generation int32
	topic      string
	partitions []int32
}

// claimLog records committed partition claims.
type claimLog struct {
	mu     sync.Mutex
	claims []partitionClaim
}

func (l *claimLog) add(c partitionClaim) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.claims = append(l.claims, c)
}

func (l *claimLog) all() []partitionClaim {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.claims)
}

// covers reports whether every partition was claimed at generation
// minGeneration or later.
func (l *claimLog) covers(minGeneration int32, partitions ...int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range partitions {
		if !slices.ContainsFunc(l.claims, func(c partitionClaim) bool {
			return c.generation >= minGeneration && c.topic == eventlog.Topic && slices.Contains(c.partitions, p)
		}) {
			return false
		}
	}
	return true
}

func partitionsOf(b postgres.Batch) []int32 {
	var out []int32
	for _, o := range b.Offsets {
		out = append(out, o.Partition)
	}
	return out
}

// answerHeartbeats makes the broker answer member's heartbeats itself,
// successfully, without the group coordinator seeing them: the member
// believes its session is healthy while the coordinator expires it. After
// stop, heartbeats reach the coordinator again.
func answerHeartbeats(cluster *kfake.Cluster, member string) (stop func()) {
	var stopped atomic.Bool
	cluster.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		hb, ok := req.(*kmsg.HeartbeatRequest)
		if !ok || stopped.Load() || hb.MemberID != member {
			return nil, nil, false
		}
		return hb.ResponseKind(), nil, true
	})
	return func() { stopped.Store(true) }
}

// onlyMember waits until the group is stable with one member and returns
// its member ID.
func onlyMember(t *testing.T, env *rolluptest.Env, group string) string {
	t.Helper()
	adm := kadm.NewClient(env.AdminClient(t))
	var id string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		groups, err := adm.DescribeGroups(t.Context(), group)
		if !assert.NoError(c, err) || !assert.NoError(c, groups.Error()) {
			return
		}
		g := groups[group]
		assert.Equal(c, "Stable", g.State)
		if assert.Len(c, g.Members, 1) {
			id = g.Members[0].MemberID
		}
	}, rolluptest.Wait, 50*time.Millisecond)
	return id
}

// runningSet sums a metric over every consumer a test started.
type runningSet struct {
	mu  sync.Mutex
	all []*rolluptest.Running
}

func (s *runningSet) add(r *rolluptest.Running) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, r)
}

func (s *runningSet) metric(name string, labels ...string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for _, r := range s.all {
		sum += r.Metric(name, labels...)
	}
	return sum
}
