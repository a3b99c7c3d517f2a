package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/abacus-analytics/abacus/eventlog"
)

// Defaults of [Config].
const (
	DefaultMaxEventBytes        = 32 << 10
	DefaultMaxBatchEvents       = 10000
	DefaultPastWindow           = 7 * 24 * time.Hour
	DefaultFutureWindow         = 10 * time.Minute
	DefaultMaxInFlightPerStream = 8
	DefaultProduceTimeout       = 10 * time.Second
)

// contractMaxBatchEvents is the most events a request may carry per
// ingest.proto; a configured limit can only be lower.
const contractMaxBatchEvents = 10000

// maxEventBytesLimit keeps every valid event small enough to fit into one
// event log record with room to spare.
const maxEventBytesLimit = eventlog.MaxRecordBytes / 2

// Config configures the [Service]. Zero values mean the documented defaults.
type Config struct {
	// MaxEventBytes is the largest accepted event, proto-encoded
	// (default 32 KiB, at most 450 KiB).
	MaxEventBytes int
	// MaxBatchEvents is how many events of one request are considered
	// (default and maximum 10,000, the contract's limit); the rest are
	// rejected with BATCH_TOO_LARGE.
	MaxBatchEvents int
	// PastWindow is how far in the past an event's timestamp may lie
	// (default 7 days).
	PastWindow time.Duration
	// FutureWindow is how far in the future an event's timestamp may lie,
	// for clock skew (default 10 minutes).
	FutureWindow time.Duration
	// MaxInFlightPerStream is how many batches of one IngestStream are
	// processed at once (default 8); when reached, the stream stops reading.
	MaxInFlightPerStream int
	// ProduceTimeout bounds the wait for Kafka's acknowledgement of one batch
	// (default 10s). A unary call's own deadline bounds it too; for streams,
	// which live long, this is what turns a hanging broker into UNAVAILABLE
	// verdicts.
	ProduceTimeout time.Duration
	// Now returns the current time (default time.Now); tests replace it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.PastWindow == 0 {
		c.PastWindow = DefaultPastWindow
	}
	if c.FutureWindow == 0 {
		c.FutureWindow = DefaultFutureWindow
	}
	if c.MaxInFlightPerStream == 0 {
		c.MaxInFlightPerStream = DefaultMaxInFlightPerStream
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = DefaultProduceTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem of the configuration, joined. Zero values
// are valid: they mean the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEventBytes < 0 || c.MaxEventBytes > maxEventBytesLimit {
		errs = append(errs, fmt.Errorf("ingest: config: MaxEventBytes is %d, must be 1 to %d", c.MaxEventBytes, maxEventBytesLimit))
	}
	if c.MaxBatchEvents < 0 || c.MaxBatchEvents > contractMaxBatchEvents {
		errs = append(errs, fmt.Errorf("ingest: config: MaxBatchEvents is %d, must be 1 to %d", c.MaxBatchEvents, contractMaxBatchEvents))
	}
	if c.PastWindow < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: PastWindow is %v, must be positive", c.PastWindow))
	}
	if c.FutureWindow < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: FutureWindow is %v, must be positive", c.FutureWindow))
	}
	if c.MaxInFlightPerStream < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: MaxInFlightPerStream is %d, must be positive", c.MaxInFlightPerStream))
	}
	if c.ProduceTimeout < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: ProduceTimeout is %v, must be positive", c.ProduceTimeout))
	}
	return errors.Join(errs...)
}
