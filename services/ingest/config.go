package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abacus-analytics/abacus/auth"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Defaults of [Config].
const (
	DefaultMaxInFlightPerStream = 8
	DefaultProduceTimeout       = 10 * time.Second
)

// contractMaxBatchEvents is the most events a request may carry per
// ingest.proto; a tenant's limit can only be lower.
const contractMaxBatchEvents = 10000

// LimitSource gives the limits in force for a tenant. *tenancy.Overrides
// implements it; the call must be cheap and must not block.
type LimitSource interface {
	For(id tenancy.ID) tenancy.Limits
}

var _ LimitSource = (*tenancy.Overrides)(nil)

// Admitter decides a batch's request rate, event rate and monthly quota in
// one call, shared by every node. *ratelimit.Admitter implements it; it
// decides locally when its shared store is unreachable, so an error only
// means a canceled context or a bug.
type Admitter interface {
	Admit(ctx context.Context, tenant tenancy.ID, now time.Time, a ratelimit.Admission) (ratelimit.Admitted, error)
}

var _ Admitter = (*ratelimit.Admitter)(nil)

// QuotaRefunder gives back quota reserved for events that were then not
// accepted. *ratelimit.Quota implements it.
type QuotaRefunder interface {
	Refund(ctx context.Context, tenant tenancy.ID, periodStart time.Time, n int) error
}

var _ QuotaRefunder = (*ratelimit.Quota)(nil)

// KeyChecker re-checks the credential of a long-lived stream.
// *auth.Authenticator implements it.
type KeyChecker interface {
	Recheck(ctx context.Context, p auth.Principal) error
}

var _ KeyChecker = (*auth.Authenticator)(nil)

// Config configures the [Service]. Zero values mean the documented defaults.
type Config struct {
	// Limits gives each tenant's limits: batch size, event size, properties,
	// timestamp window, rates and quota (default: tenancy.DefaultLimits for
	// every tenant).
	Limits LimitSource
	// Admitter enforces the requests-per-second and events-per-second
	// limits and the monthly quota across nodes, counting the usage tenants
	// read with GetUsage (nil: no rate limits and no quota).
	Admitter Admitter
	// Quota gives back what Admitter counted for events whose write then
	// failed (nil: nothing is given back).
	Quota QuotaRefunder
	// Keys re-checks a stream's API key before each batch, so that a key
	// revoked or a tenant suspended while a stream is open stops it within
	// the authenticator's cache TTL (nil: checked only when the stream
	// opens).
	Keys KeyChecker
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

// defaultLimits is the LimitSource of a Config without one.
type defaultLimits struct{ l tenancy.Limits }

func (d defaultLimits) For(tenancy.ID) tenancy.Limits { return d.l }

func (c Config) withDefaults() Config {
	if c.Limits == nil {
		c.Limits = defaultLimits{tenancy.DefaultLimits()}
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
	if c.MaxInFlightPerStream < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: MaxInFlightPerStream is %d, must be positive", c.MaxInFlightPerStream))
	}
	if c.ProduceTimeout < 0 {
		errs = append(errs, fmt.Errorf("ingest: config: ProduceTimeout is %v, must be positive", c.ProduceTimeout))
	}
	return errors.Join(errs...)
}
