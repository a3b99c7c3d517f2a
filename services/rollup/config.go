package rollup

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/abacus-analytics/abacus/eventlog"
	"time"
)

// Defaults applied by [New] to zero [Config] fields.
const (
	// DefaultGroup is the Kafka consumer group, and the key of the offsets
	// stored in PostgreSQL, when Config.Group is empty.
	DefaultGroup = eventlog.RollupGroup

	// DefaultMaxPollRecords bounds one poll, and so one database transaction,
	// when Config.MaxPollRecords is zero. Each record is one ingest batch of
	// events, so a transaction holds up to this many batches.
	DefaultMaxPollRecords = 1000

	// DefaultMaxBatchEvents bounds the events of one database transaction
	// when Config.MaxBatchEvents is zero.
	DefaultMaxBatchEvents = 20_000

	// DefaultRetryBackoff is the first delay before retrying a failed
	// database or dead-letter write when Config.RetryBackoff is zero.
	DefaultRetryBackoff = 250 * time.Millisecond

	// MaxRetryBackoff caps the doubling retry delay (unless RetryBackoff
	// itself is larger), so a consumer notices a recovered database within
	// seconds even after a long outage.
	MaxRetryBackoff = 10 * time.Second

	// DefaultLagInterval is how often the lag and processing-rate gauges are
	// refreshed when Config.LagInterval is zero.
	DefaultLagInterval = 5 * time.Second

	// DefaultApplyLanes is how many transactions of one poll run at once
	// when Config.ApplyLanes is zero: two keep a small machine's
	// PostgreSQL busy on two cores while the consumer adds up the next
	// batch.
	DefaultApplyLanes = 2

	// DefaultSketchInterval is how often the hourly and daily unique-user
	// sketches are merged when Config.SketchInterval is zero.
	DefaultSketchInterval = time.Second

	// DefaultWatermarkInterval is how often partition watermarks are proved
	// and stored when Config.WatermarkInterval is zero.
	DefaultWatermarkInterval = time.Second

	// maxApplyLanes bounds Config.ApplyLanes: each lane holds a database
	// connection while it applies.
	maxApplyLanes = 64

	// defaultHeartbeatInterval and defaultSessionTimeout are the Kafka
	// client's own defaults; a short SessionTimeout lowers the heartbeat
	// interval (see Config.HeartbeatInterval).
	defaultHeartbeatInterval = 3 * time.Second
	defaultSessionTimeout    = 45 * time.Second
)

// Config configures a [Consumer]. The zero value of every field but Brokers
// means its default.
type Config struct {
	// Brokers are the Kafka seed brokers (host:port). Required.
	Brokers []string

	// Group is the Kafka consumer group; default [DefaultGroup]. All rollup
	// consumers of one deployment share it, and it keys the offsets stored
	// in the database, so renaming it makes the new group count every event
	// from the start of the log again (deduplication keeps the counts exact).
	Group string

	// MaxPollRecords is the most records taken from Kafka per poll; default
	// [DefaultMaxPollRecords]. A poll is applied in one database transaction
	// unless it holds more than MaxBatchEvents events.
	MaxPollRecords int

	// MaxBatchEvents bounds the events of one database transaction; default
	// [DefaultMaxBatchEvents]. A record carries up to 10,000 events, so a
	// poll of many full records is applied as several consecutive
	// transactions (a single record larger than the bound gets one of its
	// own), keeping transactions and memory bounded.
	MaxBatchEvents int

	// ApplyLanes is how many database transactions of one poll run at
	// once; default [DefaultApplyLanes]. The poll's partitions are divided
	// among the lanes (a partition is in one lane only, so its offsets still
	// only grow), and each lane applies its chunks in order on a connection
	// of its own. A rollup row two lanes both add to is locked by one and
	// waited for by the other. 1 applies one transaction at a time.
	ApplyLanes int

	// SessionTimeout and RebalanceTimeout are passed to the Kafka client;
	// zero keeps the client defaults (45 s and 60 s). A batch in progress
	// blocks rebalancing, so RebalanceTimeout must exceed the time one
	// transaction takes.
	SessionTimeout, RebalanceTimeout time.Duration

	// HeartbeatInterval is how often the member tells the group coordinator
	// it is alive. Zero keeps the Kafka client's default of 3 s, lowered to a
	// third of SessionTimeout when that is shorter, so a short session
	// timeout still tolerates a missed heartbeat. When both are set it must
	// be shorter than SessionTimeout.
	HeartbeatInterval time.Duration

	// RetryBackoff is the first delay before retrying a failed database or
	// dead-letter write; it doubles per failure up to [MaxRetryBackoff].
	// Default [DefaultRetryBackoff].
	RetryBackoff time.Duration

	// LagInterval is how often abacus_rollup_partition_lag is refreshed from
	// the brokers' end offsets (so it keeps growing while the consumer is
	// stalled, for example by a database outage) and how long the window of
	// abacus_rollup_events_per_second is. Default [DefaultLagInterval].
	LagInterval time.Duration

	// WatermarkInterval is how often the consumer lists the end offsets of
	// its partitions to prove their watermarks (see [postgres.DB.Watermark]
	// and the package documentation) and stores those that advanced. Query
	// answers lag the true watermark by about this much. Default
	// [DefaultWatermarkInterval].
	WatermarkInterval time.Duration

	// SketchInterval is how often the consumer merges the pending hourly and
	// daily unique-user sketches from the finer rollups
	// ([postgres.DB.MergeCoarseSketches]); batches only mark them pending.
	// Default [DefaultSketchInterval].
	SketchInterval time.Duration

	// Notifier, when set, is told which rollup buckets each committed batch
	// changed (see [Notifier] and [RedisNotifier]). Notifications are sent
	// from a goroutine of their own and are best effort: a slow or failing
	// notifier never delays or fails a batch. Nil sends none.
	Notifier Notifier

	// AfterApply is a testing hook: when set, it is called on the goroutine
	// that applied the batch, after each batch the database committed and
	// before the poll's advisory Kafka commit. The crash tests stop the
	// process there to prove that a crash between the two commits neither
	// loses nor double-counts events. Production code leaves it nil.
	AfterApply func()
}

// Validate reports every problem of c, joined, each wrapping
// [ErrInvalidConfig]; nil when c is usable.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if len(c.Brokers) == 0 {
		bad("at least one Kafka broker is required")
	}
	for i, b := range c.Brokers {
		if b == "" {
			bad("broker %d is empty", i)
		}
	}
	if c.MaxPollRecords < 0 {
		bad("max poll records is %d, must not be negative", c.MaxPollRecords)
	}
	if c.MaxBatchEvents < 0 {
		bad("max batch events is %d, must not be negative", c.MaxBatchEvents)
	}
	if c.SessionTimeout < 0 {
		bad("session timeout is %s, must not be negative", c.SessionTimeout)
	}
	if c.RebalanceTimeout < 0 {
		bad("rebalance timeout is %s, must not be negative", c.RebalanceTimeout)
	}
	if c.HeartbeatInterval < 0 {
		bad("heartbeat interval is %s, must not be negative", c.HeartbeatInterval)
	}
	if session := cmp.Or(c.SessionTimeout, defaultSessionTimeout); c.HeartbeatInterval > 0 && session > 0 && c.HeartbeatInterval >= session {
		bad("heartbeat interval %s must be shorter than the session timeout %s", c.HeartbeatInterval, session)
	}
	if c.RetryBackoff < 0 {
		bad("retry backoff is %s, must not be negative", c.RetryBackoff)
	}
	if c.LagInterval < 0 {
		bad("lag interval is %s, must not be negative", c.LagInterval)
	}
	if c.ApplyLanes < 0 || c.ApplyLanes > maxApplyLanes {
		bad("apply lanes is %d, must be 0-%d", c.ApplyLanes, maxApplyLanes)
	}
	if c.SketchInterval < 0 {
		bad("sketch interval is %s, must not be negative", c.SketchInterval)
	}
	if c.WatermarkInterval < 0 {
		bad("watermark interval is %s, must not be negative", c.WatermarkInterval)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.ApplyLanes == 0 {
		c.ApplyLanes = DefaultApplyLanes
	}
	if c.SketchInterval == 0 {
		c.SketchInterval = DefaultSketchInterval
	}
	if c.WatermarkInterval == 0 {
		c.WatermarkInterval = DefaultWatermarkInterval
	}
	if c.LagInterval == 0 {
		c.LagInterval = DefaultLagInterval
	}
	if c.HeartbeatInterval == 0 && c.SessionTimeout > 0 && c.SessionTimeout/3 < defaultHeartbeatInterval {
		c.HeartbeatInterval = c.SessionTimeout / 3
	}
	return c
}

// backoff is the delay before retry attempt n (1-based) of a failing write.
func (c Config) backoff(n int) time.Duration {
	ceiling := max(MaxRetryBackoff, c.RetryBackoff)
	d := c.RetryBackoff
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}
