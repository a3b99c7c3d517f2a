package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/abacus-analytics/abacus/eventlog"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// Store is what the consumer needs from PostgreSQL; [*postgres.DB]
// implements it.
type Store interface {
	// ApplyBatch commits the batch's new events, their rollups and the
	// batch's offsets in one transaction, or returns an error wrapping
	// [postgres.ErrFenced] when a newer group generation owns a partition.
	ApplyBatch(ctx context.Context, b postgres.Batch) (postgres.Applied, error)
	// ClaimPartitions makes generation the owner of topic's partitions and
	// returns each one's stored next offset (0 if never applied), or an
	// error wrapping [postgres.ErrFenced] when a newer generation owns one.
	ClaimPartitions(ctx context.Context, group, topic string, generation int32, partitions []int32) (map[int32]int64, error)
	// AdvanceWatermarks stores the watermarks of partitions generation
	// still owns (others are left alone).
	AdvanceWatermarks(ctx context.Context, group, topic string, generation int32, watermarks map[int32]time.Time) error
	// MergeCoarseSketches rebuilds up to limit pending hourly and daily
	// unique-user sketches each and returns how many it merged.
	MergeCoarseSketches(ctx context.Context, limit int) (int, error)
}

var _ Store = (*postgres.DB)(nil)

// kafkaCommitTimeout bounds the advisory Kafka offset commit after each
// batch; it must not hold up the next poll for long.
const kafkaCommitTimeout = 10 * time.Second

// Consumer reads [eventlog.Topic] in a consumer group and applies it to the
// rollups exactly once; see the package documentation. Create it with [New]
// and start it with [Consumer.Run].
type Consumer struct {
	cfg    Config
	store  Store
	logger *slog.Logger
	m      *metrics
	ran    atomic.Bool

	// rebalanceWaiting is signalled (capacity 1, never blocks the sender)
	// when the Kafka client wants to rebalance but our unreleased poll
	// blocks it. A batch stuck retrying a failing database gives up its
	// records then, so the group can rebalance during an outage.
	rebalanceWaiting chan struct{}

	dbDown failureStreak

	// fencedInARow counts consecutive fenced batches to back off while the
	// rebalance that resolves them is pending.
	fencedInARow atomic.Int64

	// client is the Kafka client of the running consumer, stored by the
	// assignment callback for startOffsets, which needs the generation.
	client atomic.Pointer[kgo.Client]

	// progress is where each owned partition stands, for the lag gauges.
	progress *progress

	// changes queues changed buckets for Config.Notifier (nil without one);
	// notifyDown logs its outages.
	changes    *changeQueue
	notifyDown failureStreak
}

// New returns a consumer that applies the event log to store. It validates
// cfg and registers the metrics on reg (nil: not registered); it connects to
// nothing until [Consumer.Run].
func New(cfg Config, store Store, logger *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w: store is required", ErrInvalidConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger = logger.With(slog.String("group", cfg.Group))
	c := &Consumer{
		cfg:              cfg,
		store:            store,
		logger:           logger,
		m:                m,
		rebalanceWaiting: make(chan struct{}, 1),
		dbDown:           failureStreak{logger: logger, gauge: m.dbFailing, msgs: dbLogMessages},
		progress:         newProgress(m),
		notifyDown:       failureStreak{logger: logger, msgs: notifyLogMessages},
	}
	if cfg.Notifier != nil {
		c.changes = newChangeQueue()
	}
	return c, nil
}

// Run joins the consumer group and applies polled records until ctx is
// done, then leaves the group and returns nil. A batch in flight at shutdown
// is abandoned, which is safe: its transaction either committed together with
// its offsets or left no trace. Run never gives up on a failing database or
// dead-letter topic; it retries until they recover or ctx ends. It returns an
// error only if the Kafka client cannot be created. A Consumer runs once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	cl, err := kgo.NewClient(c.clientOptions()...)
	if err != nil {
		return fmt.Errorf("rollup: create kafka client: %w", err)
	}
	c.logger.InfoContext(ctx, "rollup consumer started",
		slog.String("topic", eventlog.Topic), slog.Any("brokers", c.cfg.Brokers))

	// The lag refresher and the notifier run beside the poll loop. They
	// stop after it (so the notifier sends the changes of the last batch)
	// and before the client closes.
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	loops.Go(func() { c.lagLoop(loopCtx, cl) })
	loops.Go(func() { c.sketchLoop(loopCtx) })
	if c.changes != nil {
		loops.Go(func() { c.notifyLoop(loopCtx) })
	}
	defer func() {
		stopLoops()
		loops.Wait()
		// An abandoned poll still blocks rebalancing, and leaving the group
		// runs the revoke callback behind that block: release it first or
		// Close would wait forever.
		cl.AllowRebalance()
		cl.Close()
		c.logger.InfoContext(ctx, "rollup consumer stopped")
	}()

	for {
		// A signal left from an earlier poll is stale: that poll has been
		// released, so the rebalance it announced is no longer blocked.
		select {
		case <-c.rebalanceWaiting:
		default:
		}
		fetches := cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		pause := c.logFetchErrors(ctx, fetches)
		if records := fetches.Records(); len(records) > 0 {
			pause = c.process(ctx, cl, fetches, records)
		}
		cl.AllowRebalance()
		if pause > 0 && !sleep(ctx, pause) {
			return nil
		}
	}
}

// clientOptions configures the group consumer. The options that carry the
// exactly-once design:
//
//   - DisableAutoCommit: Kafka's committed offsets are never the truth; the
//     database stores them with the rows they produced (Kafka commits are
//     advisory, made by hand after each batch).
//   - BlockRebalanceOnPoll: partitions cannot be revoked between a poll and
//     AllowRebalance, so a batch is applied, and its offsets stored, while
//     this member owns every partition in it.
//   - AdjustFetchOffsetsFn: where newly assigned partitions start; see
//     [Consumer.startOffsets].
func (c *Consumer) clientOptions() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ClientID("abacus-rollup"),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(eventlog.Topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(c.startOffsets),
		// A partition with no stored offset is new to this group: the group
		// must count every event ever accepted, so it starts at the
		// beginning. The same applies when a stored offset fell out of
		// retention (nothing older exists to count).
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Ingest produces idempotently, not transactionally, so this changes
		// nothing today; should a producer ever abort a transaction, its
		// records must not be counted.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.OnPartitionsCallbackBlocked(c.onCallbackBlocked),
		kgo.WithLogger(kgoLogger{c.logger}),
	}
	if c.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(c.cfg.SessionTimeout))
	}
	if c.cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(c.cfg.RebalanceTimeout))
	}
	if c.cfg.HeartbeatInterval > 0 {
		opts = append(opts, kgo.HeartbeatInterval(c.cfg.HeartbeatInterval))
	}
	return opts
}

// startOffsets is the AdjustFetchOffsetsFn: it replaces the offsets the
// client fetched from Kafka's group commits for newly assigned partitions
// with the offsets stored in the database, or the start of the partition
// where the database has none, and claims the partitions (see
// [Consumer.claim]) before a record of them is read.
//
// Why this hook and not SetOffsets in OnPartitionsAssigned: the assigned
// callback runs before the client fetches the committed offsets, and
// SetOffsets only moves partitions that are already being consumed, so the
// offsets fetched afterwards would win. AdjustFetchOffsetsFn runs after that
// fetch and before the partitions are handed to the fetchers, so nothing is
// consumed from Kafka's offsets even once. Partitions this member keeps
// across a cooperative rebalance are not passed again; their position is
// already the database's (every applied batch stored it, and a batch that
// was not applied rewinds it), and so is their claim.
//
// The client keeps heartbeating meanwhile, so when the database is down this
// retries until it answers or ctx (canceled when the session starts
// revoking) ends, and those partitions simply wait. An error ends the group
// session; the client rejoins after a backoff.
func (c *Consumer) startOffsets(ctx context.Context, fetched map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	generation := int32(-1)
	if cl := c.client.Load(); cl != nil {
		_, generation = cl.GroupMetadata()
	}
	if generation < 0 {
		return nil, errors.New("rollup: partitions assigned outside a group generation")
	}
	out := make(map[string]map[int32]kgo.Offset, len(fetched))
	for topic, partitions := range fetched {
		stored, err := c.claim(ctx, topic, generation, slices.Collect(maps.Keys(partitions)))
		if err != nil {
			return nil, err
		}
		offsets := make(map[int32]kgo.Offset, len(stored))
		start := make(map[int32]int64, len(stored)) // -1 is "beginning"
		for p, next := range stored {
			if next == 0 {
				// Never applied (or applied from offset 0 on, which is the
				// same): the start of the partition, wherever retention has
				// moved it.
				offsets[p] = kgo.NewOffset().AtStart()
				start[p] = -1
				continue
			}
			offsets[p] = kgo.NewOffset().At(next)
			start[p] = next
		}
		c.progress.assign(topic, start)
		out[topic] = offsets
		c.logger.InfoContext(ctx, "rollup partitions claimed; they start at database offsets",
			slog.String("topic", topic), slog.Int("generation", int(generation)), slog.Any("next_offsets", start))
	}
	return out, nil
}

// claim makes this member's generation the owner of newly assigned
// partitions in the database, and returns their stored offsets, before any
// of their records is read; it retries with backoff while the database is
// down, until ctx ends.
//
// Without the claim the database would learn of the new owner only with its
// first batch, and until then nothing would refuse a batch of the previous
// owner (one that stalled or lost its session without noticing): its
// generation would still be the highest stored. Dedup keeps the counts right
// even then, but a stale member's commit must be refused, not merely
// harmless. Claiming raises the stored generation the moment the partitions
// are handed over, so from then on every batch of an older generation is
// fenced. Reading the offsets and claiming is one statement
// ([postgres.DB.ClaimPartitions]), so no stale batch commits in between.
//
// ErrFenced here means a newer generation has already claimed or written
// these partitions: this member is stale before it read anything, and the
// session must end.
func (c *Consumer) claim(ctx context.Context, topic string, generation int32, partitions []int32) (map[int32]int64, error) {
	for attempt := 1; ; attempt++ {
		stored, err := c.store.ClaimPartitions(ctx, c.cfg.Group, topic, generation, partitions)
		if err == nil {
			c.dbDown.recovered(ctx)
			c.m.claims.Add(float64(len(partitions)))
			return stored, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, postgres.ErrFenced) {
			c.dbDown.recovered(ctx)
			c.m.fenced.Inc()
			c.logger.WarnContext(ctx, "rollup partition claim fenced by a newer group generation; rejoining",
				slog.Int("generation", int(generation)), slog.Any("error", err))
			return nil, fmt.Errorf("rollup: claim partitions: %w", err)
		}
		c.m.dbFailures.Inc()
		c.dbDown.failed(ctx, "claim partitions", err)
		if !sleep(ctx, c.cfg.backoff(attempt)) {
			return nil, ctx.Err()
		}
	}
}

// process applies one poll and returns how long to wait before the next
// poll (after releasing this one). The poll's partitions are spread over up
// to Config.ApplyLanes lanes that apply at once, each its own partitions'
// chunks in order, one transaction at a time (see [Consumer.applyLane]).
// Poison records of every lane go to the dead-letter topic first. The
// chunks that committed get one advisory Kafka commit at the end.
func (c *Consumer) process(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, records []*kgo.Record) time.Duration {
	// With BlockRebalanceOnPoll a rebalance waits for this poll to be
	// released, so this is the generation these records were assigned in.
	_, generation := cl.GroupMetadata()
	lanes := splitLanes(records, c.cfg.ApplyLanes)
	batches := make([]*pollBatch, len(lanes))
	var poison []poisonRecord
	for i, lane := range lanes {
		batches[i] = newPollBatch(c.cfg.Group, generation, lane, c.cfg.MaxBatchEvents)
		poison = append(poison, batches[i].poison...)
	}
	rewindAll := func() {
		for _, pb := range batches {
			c.rewind(ctx, cl, pb, 0)
		}
	}
	if generation < 0 {
		c.logger.WarnContext(ctx, "rollup polled records outside a group generation; dropping them to read again",
			slog.Int("records", len(records)))
		rewindAll()
		return c.cfg.RetryBackoff
	}

	// A rebalance waiting for this poll makes every lane give up a failing
	// batch (see [Consumer.wait]); the signal comes once, so it is turned
	// into a closed channel that all of them see.
	abandon := make(chan struct{})
	processed := make(chan struct{})
	defer close(processed)
	go func() {
		select {
		case <-c.rebalanceWaiting:
			close(abandon)
		case <-processed:
		}
	}()

	// Poison records go to the dead-letter topic before their offsets are
	// stored: once the offsets commit, they are never read again.
	if len(poison) > 0 && !c.deadLetter(ctx, cl, poison, abandon) {
		rewindAll()
		return 0
	}

	highs := highWatermarks(fetches)
	pauses := make([]time.Duration, len(batches))
	committed := make([][]*kgo.Record, len(batches))
	if len(batches) == 1 {
		pauses[0], committed[0] = c.applyLane(ctx, cl, batches[0], highs, abandon)
	} else {
		var wg sync.WaitGroup
		for i, pb := range batches {
			wg.Go(func() { pauses[i], committed[i] = c.applyLane(ctx, cl, pb, highs, abandon) })
		}
		wg.Wait()
	}
	c.commitToKafka(ctx, cl, slices.Concat(committed...))
	return slices.Max(pauses)
}

// applyLane applies one lane's chunks in order and returns how long to wait
// before the next poll and the records of the chunks that committed. When a
// chunk is dropped — fenced, or abandoned for a rebalance or shutdown — the
// fetch positions of the lane's unapplied records are rewound to their first
// record per partition, so a partition this member still owns is read again
// rather than skipped, and the rest of the lane waits for the next poll.
func (c *Consumer) applyLane(ctx context.Context, cl *kgo.Client, pb *pollBatch, highs map[topicPartition]int64,
	abandon <-chan struct{}) (time.Duration, []*kgo.Record) {
	var committed []*kgo.Record
	for i, ch := range pb.chunks {
		start := time.Now()
		applied, result := c.apply(ctx, ch.batch, abandon)
		switch result {
		case applyAbandoned:
			c.rewind(ctx, cl, pb, i)
			return 0, committed
		case applyFenced:
			c.rewind(ctx, cl, pb, i)
			// The rebalance that takes these partitions away is on its way;
			// release the poll and give it time rather than spinning.
			return c.cfg.backoff(int(c.fencedInARow.Add(1))), committed
		}
		c.fencedInARow.Store(0)
		c.m.batchSeconds.Observe(time.Since(start).Seconds())
		c.m.events.WithLabelValues(resultInserted).Add(float64(applied.Inserted))
		c.m.events.WithLabelValues(resultDuplicate).Add(float64(applied.Duplicates))
		c.m.records.WithLabelValues(resultOK).Add(float64(ch.ok))
		c.m.records.WithLabelValues(resultPoison).Add(float64(ch.poison))
		c.logger.DebugContext(ctx, "rollup batch applied",
			slog.Int("records", len(ch.records)), slog.Int("inserted", applied.Inserted),
			slog.Int("duplicates", applied.Duplicates), slog.Int("poison", ch.poison),
			slog.Int("generation", int(ch.batch.Generation)))
		c.progress.committed(ch.next, highs, applied.Inserted+applied.Duplicates)
		c.queueChanges(ctx, applied.Buckets)
		if c.cfg.AfterApply != nil {
			c.cfg.AfterApply()
		}
		committed = append(committed, ch.records...)
	}
	return 0, committed
}

// rewind moves the fetch positions of pb's partitions back to their first
// record in chunks[from:], unless ctx ended (on shutdown the next owner
// starts from the database anyway).
func (c *Consumer) rewind(ctx context.Context, cl *kgo.Client, pb *pollBatch, from int) {
	if ctx.Err() == nil && from < len(pb.chunks) {
		cl.SetOffsets(pb.rewindOffsets(from))
	}
}

// applyResult is how [Consumer.apply] ended.
type applyResult int

const (
	applyCommitted applyResult = iota
	applyFenced
	applyAbandoned
)

// apply runs ApplyBatch until it commits, is fenced, or is abandoned because
// ctx ended or a rebalance is waiting. A failing database gets the same batch
// again after a capped exponential backoff: polling more meanwhile would only
// pile up records, and exiting would make a supervisor restart us into the
// same outage.
func (c *Consumer) apply(ctx context.Context, b postgres.Batch, abandon <-chan struct{}) (postgres.Applied, applyResult) {
	for attempt := 1; ; attempt++ {
		applied, err := c.store.ApplyBatch(ctx, b)
		if err == nil {
			c.dbDown.recovered(ctx)
			return applied, applyCommitted
		}
		if ctx.Err() != nil {
			return postgres.Applied{}, applyAbandoned
		}
		if errors.Is(err, postgres.ErrFenced) {
			// The database answered, so it is not down. This member's
			// generation is stale: a newer one owns some of these
			// partitions and has stored offsets. The transaction rolled
			// back; the rebalance will tell us what we still own.
			c.dbDown.recovered(ctx)
			c.m.fenced.Inc()
			c.logger.WarnContext(ctx, "rollup batch fenced by a newer group generation; dropping it",
				slog.Int("generation", int(b.Generation)), slog.Any("error", err))
			return postgres.Applied{}, applyFenced
		}
		c.m.dbFailures.Inc()
		c.dbDown.failed(ctx, "apply batch", err)
		if !c.wait(ctx, c.cfg.backoff(attempt), abandon) {
			return postgres.Applied{}, applyAbandoned
		}
	}
}

// deadLetter produces the poison records to the dead-letter topic and waits
// for the acknowledgements, retrying like apply. It reports false when it
// gave up because ctx ended or a rebalance is waiting. Delivery is at least
// once: a retried or re-polled record may be dead-lettered twice.
func (c *Consumer) deadLetter(ctx context.Context, cl *kgo.Client, poison []poisonRecord, abandon <-chan struct{}) bool {
	for attempt := 1; ; attempt++ {
		// Fresh records each attempt: the client owns a record until its
		// promise completes.
		out := make([]*kgo.Record, len(poison))
		for i, p := range poison {
			out[i] = deadLetterRecord(p)
		}
		err := cl.ProduceSync(ctx, out...).FirstErr()
		if err == nil {
			for _, p := range poison {
				c.logger.WarnContext(ctx, "rollup record sent to the dead-letter topic",
					slog.String("topic", p.record.Topic), slog.Int("partition", int(p.record.Partition)),
					slog.Int64("offset", p.record.Offset), slog.String("reason", p.reason))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.m.deadLetterFails.Inc()
		c.logger.ErrorContext(ctx, "rollup dead-letter produce failed; retrying",
			slog.Int("records", len(poison)), slog.Int("attempt", attempt), slog.Any("error", err))
		if !c.wait(ctx, c.cfg.backoff(attempt), abandon) {
			return false
		}
	}
}

// commitToKafka commits the applied records' offsets to Kafka. This is
// advisory — for lag tooling (kadm, kafka-consumer-groups) and to keep the
// group alive in Kafka — so a failure is only logged: the next member to
// own a partition starts from the database.
func (c *Consumer) commitToKafka(ctx context.Context, cl *kgo.Client, records []*kgo.Record) {
	cctx, cancel := context.WithTimeout(ctx, kafkaCommitTimeout)
	defer cancel()
	if err := cl.CommitRecords(cctx, records...); err != nil && ctx.Err() == nil {
		c.m.commitFailures.Inc()
		c.logger.WarnContext(ctx, "rollup advisory kafka offset commit failed", slog.Any("error", err))
	}
}

// logFetchErrors logs the errors a poll carried and returns how long to wait
// before polling again: a poll of nothing but errors would otherwise spin.
func (c *Consumer) logFetchErrors(ctx context.Context, fetches kgo.Fetches) time.Duration {
	errs := fetches.Errors()
	for _, fe := range errs {
		if errors.Is(fe.Err, context.Canceled) {
			continue
		}
		c.logger.WarnContext(ctx, "rollup fetch error",
			slog.String("topic", fe.Topic), slog.Int("partition", int(fe.Partition)), slog.Any("error", fe.Err))
	}
	if len(errs) > 0 && fetches.NumRecords() == 0 {
		return c.cfg.RetryBackoff
	}
	return 0
}

func (c *Consumer) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	// startOffsets, which runs after this callback in every session that
	// assigns partitions, reads the generation through the client.
	c.client.Store(cl)
	if len(assigned) == 0 {
		return // a cooperative rebalance that added nothing
	}
	c.logger.InfoContext(ctx, "rollup partitions assigned", slog.Any("partitions", assigned))
}

func (c *Consumer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		return // called at the end of every session, revoking or not
	}
	c.logger.InfoContext(ctx, "rollup partitions revoked", slog.Any("partitions", revoked))
	c.progress.forget(revoked)
}

func (c *Consumer) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	if len(lost) == 0 {
		return
	}
	c.logger.WarnContext(ctx, "rollup partitions lost", slog.Any("partitions", lost))
	c.progress.forget(lost)
}

func (c *Consumer) onCallbackBlocked(context.Context, *kgo.Client) {
	select {
	case c.rebalanceWaiting <- struct{}{}:
	default:
	}
}

// wait sleeps d and reports true, or reports false as soon as ctx ends or
// abandon closes: a rebalance is waiting for our poll.
func (c *Consumer) wait(ctx context.Context, d time.Duration, abandon <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-abandon:
		c.logger.InfoContext(ctx, "rollup abandoning a failing batch so the group can rebalance")
		return false
	}
}

// sleep sleeps d and reports true, or reports false as soon as ctx ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// failureStreak tracks consecutive failures of a dependency so an outage
// is logged once when it starts and once when it ends, not per retry, and
// drives a gauge (nil: none). Polling and offset loading share the
// database's streak; notifications have their own.
type failureStreak struct {
	logger *slog.Logger
	gauge  prometheus.Gauge
	msgs   streakMessages

	mu       sync.Mutex
	failures int
	since    time.Time
}

// streakMessages are the static log messages of a failureStreak.
type streakMessages struct {
	failed, recovered string
}

// dbLogMessages are the outage log lines of the database.
var dbLogMessages = streakMessages{
	failed:    "rollup database call failed; retrying until it recovers",
	recovered: "rollup database recovered",
}

func (s *failureStreak) failed(ctx context.Context, op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	if s.failures > 1 {
		return
	}
	s.since = time.Now()
	if s.gauge != nil {
		s.gauge.Set(1)
	}
	s.logger.ErrorContext(ctx, s.msgs.failed, slog.String("operation", op), slog.Any("error", err))
}

func (s *failureStreak) recovered(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures == 0 {
		return
	}
	s.logger.InfoContext(ctx, s.msgs.recovered,
		slog.Int("failures", s.failures), slog.Duration("outage", time.Since(s.since)))
	s.failures = 0
	if s.gauge != nil {
		s.gauge.Set(0)
	}
}

// kgoLogger sends the Kafka client's warnings and errors to slog. Its
// messages are static with key-value pairs, as ours are.
type kgoLogger struct{ l *slog.Logger }

func (kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	msg = "kafka client: " + msg
	switch level {
	case kgo.LogLevelError:
		k.l.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn(msg, keyvals...)
	case kgo.LogLevelInfo:
		k.l.Info(msg, keyvals...)
	default:
		k.l.Debug(msg, keyvals...)
	}
}
