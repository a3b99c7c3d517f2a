package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits are the limits in force for one tenant. The operator configures defaults; the admin
// API stores per-tenant overrides ([LimitOverrides]); [Overrides] combines the two.
type Limits struct {
	// EventsPerSecond is the sustained rate of accepted events, all nodes together.
	EventsPerSecond float64
	// EventsBurst is how many events may be accepted at once above the sustained rate.
	EventsBurst int64
	// RequestsPerSecond is the sustained rate of ingest requests or stream batches.
	RequestsPerSecond float64
	// MaxBatchEvents is the largest number of events in one request or stream batch.
	MaxBatchEvents int
	// MaxEventBytes is the largest encoded event.
	MaxEventBytes int
	// MaxProperties is the largest number of properties on one event.
	MaxProperties int
	// TimestampPastWindow is how far in the past an event time may be.
	TimestampPastWindow time.Duration
	// TimestampFutureWindow is how far in the future an event time may be.
	TimestampFutureWindow time.Duration
	// MonthlyEventQuota is the hard limit of accepted events per calendar month (UTC); 0 means
	// unlimited.
	MonthlyEventQuota int64
	// MonthlyEventQuotaSoft is a threshold reported in usage and metrics but not enforced; 0
	// means none.
	MonthlyEventQuotaSoft int64
	// QueryRequestsPerSecond is the sustained rate of query requests.
	QueryRequestsPerSecond float64
	// KafkaShards is how many record keys (and so partitions) the tenant's events spread over.
	KafkaShards int
	// RawRetention is how long raw events are kept, by event time. A raw event is also the
	// event's dedup key, so it must outlive every chance of the same event being accepted or
	// applied again: deleting it while a retry of the event can still be accepted (its time is
	// within TimestampPastWindow) or is still on its way through Kafka would let a duplicate count
	// twice. Hence at least TimestampPastWindow + [RetentionDedupMargin]; replays of Kafka records
	// kept longer than RawRetention - TimestampPastWindow can still count again.
	RawRetention time.Duration
	// RollupRetention is how long rollups are kept: a rollup row goes once all of its bucket is
	// older. At least RawRetention, so no rollup is lost while its raw events are still kept.
	RollupRetention time.Duration
}

// The bounds every limit must respect, whoever sets it. They match the validation rules of
// abacus.admin.v1.TenantLimits.
const (
	MaxBatchEventsLimit = 10000
	MaxEventBytesLimit  = 450 << 10
	MaxPropertiesLimit  = 64
	MaxKafkaShards      = 256
	// MinRate and MaxRate bound every per-second rate, MaxBurst every burst: the range the
	// rate limiter represents exactly (ratelimit.MinRate, MaxRate, MaxBurst).
	MinRate  = 1e-5
	MaxRate  = 1e7
	MaxBurst = 1 << 53
	// RetentionDedupMargin is how much longer than TimestampPastWindow raw events are kept at
	// least: the time an accepted event may wait in Kafka before the rollup consumer applies it,
	// plus clock skew between nodes.
	RetentionDedupMargin = 24 * time.Hour
	// MaxRawRetention and MaxRollupRetention bound the retentions: 10 and 20 years of 365.25 days
	// (the year google.protobuf.Duration's own range is defined in).
	MaxRawRetention    = 10 * year
	MaxRollupRetention = 20 * year
)

// year is 365.25 days.
const year = 8766 * time.Hour

// DefaultLimits are the limits of a tenant without overrides when the operator configured none.
func DefaultLimits() Limits {
	return Limits{
		EventsPerSecond:        10000,
		EventsBurst:            20000,
		RequestsPerSecond:      200,
		MaxBatchEvents:         MaxBatchEventsLimit,
		MaxEventBytes:          32 << 10,
		MaxProperties:          MaxPropertiesLimit,
		TimestampPastWindow:    7 * 24 * time.Hour,
		TimestampFutureWindow:  10 * time.Minute,
		MonthlyEventQuota:      0,
		MonthlyEventQuotaSoft:  0,
		QueryRequestsPerSecond: 50,
		KafkaShards:            1,
		RawRetention:           90 * 24 * time.Hour,
		RollupRetention:        2 * year,
	}
}

// Validate returns every problem with l, joined.
func (l Limits) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("limits: "+format, args...))
		}
	}
	check(l.EventsPerSecond >= MinRate && l.EventsPerSecond <= MaxRate, "events per second must be %g-%g, got %v", MinRate, MaxRate, l.EventsPerSecond)
	check(l.EventsBurst >= 1 && l.EventsBurst <= MaxBurst, "events burst must be 1-%d, got %d", int64(MaxBurst), l.EventsBurst)
	check(l.RequestsPerSecond >= MinRate && l.RequestsPerSecond <= MaxRate, "requests per second must be %g-%g, got %v", MinRate, MaxRate, l.RequestsPerSecond)
	check(l.MaxBatchEvents >= 1 && l.MaxBatchEvents <= MaxBatchEventsLimit, "max batch events must be 1-%d, got %d", MaxBatchEventsLimit, l.MaxBatchEvents)
	check(l.MaxEventBytes >= 256 && l.MaxEventBytes <= MaxEventBytesLimit, "max event bytes must be 256-%d, got %d", MaxEventBytesLimit, l.MaxEventBytes)
	check(l.MaxProperties >= 0 && l.MaxProperties <= MaxPropertiesLimit, "max properties must be 0-%d, got %d", MaxPropertiesLimit, l.MaxProperties)
	check(l.TimestampPastWindow > 0, "timestamp past window must be positive, got %v", l.TimestampPastWindow)
	check(l.TimestampFutureWindow >= 0, "timestamp future window must not be negative, got %v", l.TimestampFutureWindow)
	check(l.MonthlyEventQuota >= 0, "monthly event quota must not be negative, got %d", l.MonthlyEventQuota)
	check(l.MonthlyEventQuotaSoft >= 0, "monthly event quota soft threshold must not be negative, got %d", l.MonthlyEventQuotaSoft)
	check(l.QueryRequestsPerSecond >= MinRate && l.QueryRequestsPerSecond <= MaxRate, "query requests per second must be %g-%g, got %v", MinRate, MaxRate, l.QueryRequestsPerSecond)
	check(l.KafkaShards >= 1 && l.KafkaShards <= MaxKafkaShards, "kafka shards must be 1-%d, got %d", MaxKafkaShards, l.KafkaShards)
	// Compared without adding, so that no window, however large, can overflow the sum.
	check(l.RawRetention >= RetentionDedupMargin && l.RawRetention-RetentionDedupMargin >= l.TimestampPastWindow,
		"raw retention must be at least the timestamp past window (%v) + %v, got %v", l.TimestampPastWindow, RetentionDedupMargin, l.RawRetention)
	check(l.RawRetention <= MaxRawRetention, "raw retention must be at most %v, got %v", MaxRawRetention, l.RawRetention)
	check(l.RollupRetention >= l.RawRetention, "rollup retention must be at least the raw retention (%v), got %v", l.RawRetention, l.RollupRetention)
	check(l.RollupRetention <= MaxRollupRetention, "rollup retention must be at most %v, got %v", MaxRollupRetention, l.RollupRetention)
	return errors.Join(errs...)
}

// LimitOverrides are one tenant's overrides of the default limits; nil fields keep the default.
// They are what the admin API stores.
type LimitOverrides struct {
	EventsPerSecond        *float64       `json:"events_per_second,omitempty"`
	EventsBurst            *int64         `json:"events_burst,omitempty"`
	RequestsPerSecond      *float64       `json:"requests_per_second,omitempty"`
	MaxBatchEvents         *int           `json:"max_batch_events,omitempty"`
	MaxEventBytes          *int           `json:"max_event_bytes,omitempty"`
	MaxProperties          *int           `json:"max_properties,omitempty"`
	TimestampPastWindow    *time.Duration `json:"timestamp_past_window,omitempty"`
	TimestampFutureWindow  *time.Duration `json:"timestamp_future_window,omitempty"`
	MonthlyEventQuota      *int64         `json:"monthly_event_quota,omitempty"`
	MonthlyEventQuotaSoft  *int64         `json:"monthly_event_quota_soft,omitempty"`
	QueryRequestsPerSecond *float64       `json:"query_requests_per_second,omitempty"`
	KafkaShards            *int           `json:"kafka_shards,omitempty"`
	RawRetention           *time.Duration `json:"raw_retention,omitempty"`
	RollupRetention        *time.Duration `json:"rollup_retention,omitempty"`
}

// Apply returns base with the overrides set in o.
func (o LimitOverrides) Apply(base Limits) Limits {
	set(&base.EventsPerSecond, o.EventsPerSecond)
	set(&base.EventsBurst, o.EventsBurst)
	set(&base.RequestsPerSecond, o.RequestsPerSecond)
	set(&base.MaxBatchEvents, o.MaxBatchEvents)
	set(&base.MaxEventBytes, o.MaxEventBytes)
	set(&base.MaxProperties, o.MaxProperties)
	set(&base.TimestampPastWindow, o.TimestampPastWindow)
	set(&base.TimestampFutureWindow, o.TimestampFutureWindow)
	set(&base.MonthlyEventQuota, o.MonthlyEventQuota)
	set(&base.MonthlyEventQuotaSoft, o.MonthlyEventQuotaSoft)
	set(&base.QueryRequestsPerSecond, o.QueryRequestsPerSecond)
	set(&base.KafkaShards, o.KafkaShards)
	set(&base.RawRetention, o.RawRetention)
	set(&base.RollupRetention, o.RollupRetention)
	return base
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// OverridesSource loads every tenant's limit overrides (implemented by the PostgreSQL store).
type OverridesSource interface {
	LoadLimitOverrides(ctx context.Context) (map[ID]LimitOverrides, error)
}

// Overrides answers "what are tenant X's limits" without blocking: it keeps every tenant's
// overrides in memory and reloads them from the source every refresh interval, so a change made
// through the admin API takes effect on every node within that interval. When a reload fails
// the last good table stays in force.
type Overrides struct {
	defaults Limits
	source   OverridesSource
	refresh  time.Duration
	logger   *slog.Logger

	table atomic.Pointer[map[ID]Limits]

	reloads *prometheus.CounterVec
}

// OverridesConfig configures [Overrides].
type OverridesConfig struct {
	// Defaults are the limits of tenants without overrides.
	Defaults Limits
	// Refresh is how often overrides are reloaded (default 5s).
	Refresh time.Duration
}

// NewOverrides returns an Overrides with only the defaults until Run (or Reload) loads the
// table. source may be nil for a process without per-tenant overrides.
func NewOverrides(cfg OverridesConfig, source OverridesSource, logger *slog.Logger, reg prometheus.Registerer) (*Overrides, error) {
	if err := cfg.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("default %w", err)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	o := &Overrides{
		defaults: cfg.Defaults,
		source:   source,
		refresh:  cfg.Refresh,
		logger:   logger,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_limits_reloads_total",
			Help: "Reloads of per-tenant limit overrides, by result.",
		}, []string{"result"}),
	}
	if reg != nil {
		if err := reg.Register(o.reloads); err != nil {
			return nil, err
		}
	}
	empty := map[ID]Limits{}
	o.table.Store(&empty)
	return o, nil
}

// Defaults returns the limits of tenants without overrides.
func (o *Overrides) Defaults() Limits { return o.defaults }

// Reload loads the overrides now. Overrides that would make a limit invalid are ignored for
// that tenant (and logged), so one bad row cannot take the defaults away from anyone.
func (o *Overrides) Reload(ctx context.Context) error {
	if o.source == nil {
		return nil
	}
	all, err := o.source.LoadLimitOverrides(ctx)
	if err != nil {
		o.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("reload limit overrides: %w", err)
	}
	table := make(map[ID]Limits, len(all))
	for id, ov := range all {
		l := ov.Apply(o.defaults)
		if err := l.Validate(); err != nil {
			o.logger.WarnContext(ctx, "ignoring invalid limit overrides", "tenant_id", id.String(), "error", err)
			continue
		}
		table[id] = l
	}
	o.table.Store(&table)
	o.reloads.WithLabelValues("ok").Inc()
	return nil
}

// Run reloads the overrides every refresh interval until ctx is done.
func (o *Overrides) Run(ctx context.Context) error {
	t := time.NewTicker(o.refresh)
	defer t.Stop()
	for {
		if err := o.Reload(ctx); err != nil && ctx.Err() == nil {
			o.logger.WarnContext(ctx, "limit overrides reload failed; keeping the last table", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// For returns the limits in force for tenant id.
func (o *Overrides) For(id ID) Limits {
	if l, ok := (*o.table.Load())[id]; ok {
		return l
	}
	return o.defaults
}

// Snapshot returns a copy of the current per-tenant table (tenants with overrides only).
func (o *Overrides) Snapshot() map[ID]Limits { return maps.Clone(*o.table.Load()) }

// EventRate is the tenant's sustained events per second and burst.
func (o *Overrides) EventRate(id ID) (perSecond float64, burst int64) {
	l := o.For(id)
	return l.EventsPerSecond, l.EventsBurst
}

// RequestRate is the tenant's sustained ingest requests per second.
func (o *Overrides) RequestRate(id ID) float64 { return o.For(id).RequestsPerSecond }

// QueryRate is the tenant's sustained query requests per second.
func (o *Overrides) QueryRate(id ID) float64 { return o.For(id).QueryRequestsPerSecond }

// MaxBatchEvents is the tenant's largest batch.
func (o *Overrides) MaxBatchEvents(id ID) int { return o.For(id).MaxBatchEvents }

// MaxEventBytes is the tenant's largest encoded event.
func (o *Overrides) MaxEventBytes(id ID) int { return o.For(id).MaxEventBytes }

// MaxProperties is the tenant's largest number of properties per event.
func (o *Overrides) MaxProperties(id ID) int { return o.For(id).MaxProperties }

// TimestampWindow is how far in the past and future the tenant's event times may be.
func (o *Overrides) TimestampWindow(id ID) (past, future time.Duration) {
	l := o.For(id)
	return l.TimestampPastWindow, l.TimestampFutureWindow
}

// MonthlyQuota is the tenant's hard monthly event quota (0 = unlimited) and soft threshold.
func (o *Overrides) MonthlyQuota(id ID) (hard, soft int64) {
	l := o.For(id)
	return l.MonthlyEventQuota, l.MonthlyEventQuotaSoft
}

// KafkaShards is how many record keys the tenant's events spread over.
func (o *Overrides) KafkaShards(id ID) int { return o.For(id).KafkaShards }

// Retention is how long the tenant's raw events and rollups are kept.
func (o *Overrides) Retention(id ID) (raw, rollup time.Duration) {
	l := o.For(id)
	return l.RawRetention, l.RollupRetention
}

// MonthPeriod returns the quota period containing t: the calendar month in UTC, [start, end).
func MonthPeriod(t time.Time) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}
