package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// LockName is the PostgreSQL advisory lock a process holds while it runs a
// round, so that one process of a deployment runs at a time.
const LockName = "abacus.retention"

// releaseTimeout bounds giving the lock back after a round, however the
// round ended.
const releaseTimeout = 5 * time.Second

// Store is what the job needs from PostgreSQL; [*postgres.DB] implements it.
type Store interface {
	// TryAdvisoryLock takes the named advisory lock unless another session
	// holds it; release ends the session that holds it.
	TryAdvisoryLock(ctx context.Context, name string) (release func(context.Context), acquired bool, err error)
	// ListTenants returns up to pageSize tenants after afterID, by ID.
	ListTenants(ctx context.Context, pageSize int, afterID string) ([]postgres.Tenant, error)
	// EnforceRetention deletes the expired data of each policy's tenant; on
	// error the result counts what was deleted before it.
	EnforceRetention(ctx context.Context, policies []postgres.RetentionPolicy, now time.Time) (postgres.RetentionResult, error)
}

var _ Store = (*postgres.DB)(nil)

// Config configures a [Job].
type Config struct {
	// Interval is the time between the starts of two rounds. Required.
	Interval time.Duration
	// Defaults are the limits of tenants without overrides, as every other
	// part of the process uses them. They must be valid.
	Defaults tenancy.Limits
	// Now returns the current time; nil means time.Now. Cutoffs are computed
	// from it.
	Now func() time.Time
}

// Validate reports every problem of c, joined, each wrapping
// [ErrInvalidConfig]; nil when c is usable.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("%w: interval is %s, must be positive", ErrInvalidConfig, c.Interval))
	}
	if err := c.Defaults.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: default %w", ErrInvalidConfig, err))
	}
	return errors.Join(errs...)
}

// Job runs retention rounds; see the package documentation. Create it with
// [New] and start it with [Job.Run].
type Job struct {
	cfg    Config
	store  Store
	logger *slog.Logger
	m      *metrics
}

// New returns a job over store. It validates cfg and registers the metrics on
// reg (nil: not registered); it starts nothing.
func New(cfg Config, store Store, logger *slog.Logger, reg prometheus.Registerer) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w: store is required", ErrInvalidConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Job{cfg: cfg, store: store, logger: logger, m: m}, nil
}

// Run runs a round at once and then one every interval until ctx is done,
// and returns nil. A failed round is logged and counted, never returned: the
// next one runs an interval later. A round longer than the interval delays
// the next, which then starts at once.
func (j *Job) Run(ctx context.Context) error {
	ticker := time.NewTicker(j.cfg.Interval)
	defer ticker.Stop()
	for {
		// Round logs and counts its failures itself.
		_, _ = j.Round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Report says what one round did.
type Report struct {
	// Ran is false when another process held the lock and the round was
	// skipped; the other fields are then zero.
	Ran bool
	// Tenants is the number of tenants whose data the round enforced
	// retention on.
	Tenants int
	// Invalid lists the tenants left alone because their effective limits are
	// not valid.
	Invalid []tenancy.ID
	// Result is what the store deleted.
	Result postgres.RetentionResult
}

// Round runs one round now, unless another process is running one: it takes
// the lock, reads every tenant's limits and has the store delete what they
// let go. It logs and counts the outcome, and returns it too.
func (j *Job) Round(ctx context.Context) (Report, error) {
	release, acquired, err := j.store.TryAdvisoryLock(ctx, LockName)
	if err != nil {
		return Report{}, j.failed(ctx, Report{}, time.Now(), fmt.Errorf("retention: take lock: %w", err))
	}
	if !acquired {
		j.m.skipped.Inc()
		j.logger.DebugContext(ctx, "retention round skipped: another process is running one")
		return Report{}, nil
	}
	defer func() {
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		release(releaseCtx)
	}()

	start := time.Now()
	rep := Report{Ran: true}
	policies, invalid, err := j.policies(ctx)
	rep.Tenants, rep.Invalid = len(policies), invalid
	if err != nil {
		return rep, j.failed(ctx, rep, start, err)
	}
	rep.Result, err = j.store.EnforceRetention(ctx, policies, j.cfg.Now())
	j.count(rep.Result)
	if err != nil {
		return rep, j.failed(ctx, rep, start, fmt.Errorf("retention: %w", err))
	}
	j.m.lastSuccess.Set(float64(j.cfg.Now().Unix()))
	j.logger.InfoContext(ctx, "retention round done", j.attrs(rep, start)...)
	return rep, nil
}

// policies returns the retention of every tenant with valid effective
// limits, and the tenants without.
func (j *Job) policies(ctx context.Context) ([]postgres.RetentionPolicy, []tenancy.ID, error) {
	var (
		policies []postgres.RetentionPolicy
		invalid  []tenancy.ID
		after    string
	)
	for {
		page, err := j.store.ListTenants(ctx, postgres.MaxPageSize, after)
		if err != nil {
			return policies, invalid, fmt.Errorf("retention: list tenants: %w", err)
		}
		for _, t := range page {
			limits := t.Limits.Apply(j.cfg.Defaults)
			if err := limits.Validate(); err != nil {
				invalid = append(invalid, t.ID)
				j.logger.WarnContext(ctx, "retention skips a tenant whose limits are not valid",
					slog.String("tenant_id", t.ID.String()), slog.Any("error", err))
				continue
			}
			policies = append(policies, postgres.RetentionPolicy{Tenant: t.ID, Raw: limits.RawRetention, Rollup: limits.RollupRetention})
		}
		if len(page) < postgres.MaxPageSize {
			return policies, invalid, nil
		}
		after = page[len(page)-1].ID.String()
	}
}

// count adds what a round deleted, whether or not it finished, to the metrics.
func (j *Job) count(res postgres.RetentionResult) {
	for table, n := range res.Deleted {
		j.m.deleted.WithLabelValues(table).Add(float64(n))
	}
	for table, n := range res.DroppedChunks {
		j.m.dropped.WithLabelValues(table).Add(float64(n))
	}
}

// failed logs and counts a failed round and returns err. A round cut short
// by the end of ctx (the process stopping) is not a failure.
func (j *Job) failed(ctx context.Context, rep Report, start time.Time, err error) error {
	if ctx.Err() != nil {
		j.logger.InfoContext(ctx, "retention round stopped", j.attrs(rep, start)...)
		return err
	}
	j.m.failures.Inc()
	j.logger.ErrorContext(ctx, "retention round failed; retrying next interval",
		append(j.attrs(rep, start), slog.Any("error", err))...)
	return err
}

// attrs describe a round for its log line.
func (j *Job) attrs(rep Report, start time.Time) []any {
	return []any{
		slog.Int("tenants", rep.Tenants),
		slog.Int("tenants_invalid", len(rep.Invalid)),
		tableCounts("deleted_rows", rep.Result.Deleted),
		tableCounts("dropped_chunks", rep.Result.DroppedChunks),
		slog.Duration("duration", time.Since(start)),
	}
}

// tableCounts is a log group of counts per table, in table order.
func tableCounts(name string, counts map[string]int64) slog.Attr {
	attrs := make([]any, 0, len(counts))
	for _, table := range slices.Sorted(maps.Keys(counts)) {
		attrs = append(attrs, slog.Int64(table, counts[table]))
	}
	return slog.Group(name, attrs...)
}
