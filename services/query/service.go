package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Defaults applied by [New] to zero [Config] fields.
const (
	// DefaultMaxPoints bounds the buckets of one series: a week of minutes
	// or more than a year of hours.
	DefaultMaxPoints = 10_000
	// DefaultMaxRange bounds the time range of one series: a year and a bit,
	// so that a year of days compares with the same days a year before.
	DefaultMaxRange = 400 * 24 * time.Hour
	// DefaultWatchPollInterval is how often a watch re-reads its range while
	// watches poll the store.
	DefaultWatchPollInterval = time.Second
	// DefaultWatchHeartbeat is the longest a watch stays silent; below the
	// idle timeouts of common proxies and load balancers (60 s and up).
	DefaultWatchHeartbeat = 15 * time.Second
)

// Store is what the query service needs from storage. *postgres.DB
// satisfies it.
type Store interface {
	// TimeSeries returns the non-empty buckets of metric (a
	// postgres.Metric* constant) of the events of eventType for tenant over
	// [start, end), in time order, aligned in UTC to granularity (a
	// postgres.Granularity* constant). The service always passes a range
	// aligned to the granularity, which lets the store read the hourly or
	// daily rollups.
	TimeSeries(ctx context.Context, tenant tenancy.ID, eventType, metric string,
		start, end time.Time, granularity string) ([]postgres.Point, error)
	// Watermark returns the time before which every event accepted into
	// topic has been applied by the consumer group, or the zero time while
	// unknown.
	Watermark(ctx context.Context, group, topic string) (time.Time, error)
}

// Config configures a [Service]. Zero fields take the defaults above.
type Config struct {
	// MaxPoints is the largest number of buckets a series may have.
	MaxPoints int
	// MaxRange is the longest time range a series may cover, after rounding
	// to the granularity.
	MaxRange time.Duration
	// WatchPollInterval is how often a watch re-reads its range.
	WatchPollInterval time.Duration
	// WatchHeartbeat is how long a watch may go without sending anything
	// before it sends a heartbeat.
	WatchHeartbeat time.Duration
	// LateWindow returns how far in the past a tenant's event times may be
	// (its timestamp past window), which says when its buckets are final.
	// Nil leaves GetTimeSeriesResponse.final_before unset.
	LateWindow func(tenancy.ID) time.Duration
	// Now returns the current time; nil means time.Now. It places the end of
	// a watch without an end and stamps watch messages.
	Now func() time.Time
}

// Validate reports every problem of c, joined, or nil. Zero values are valid
// (they mean the defaults).
func (c Config) Validate() error {
	var errs []error
	if c.MaxPoints < 0 {
		errs = append(errs, fmt.Errorf("query: MaxPoints must not be negative, got %d", c.MaxPoints))
	}
	if c.MaxRange < 0 {
		errs = append(errs, fmt.Errorf("query: MaxRange must not be negative, got %s", c.MaxRange))
	} else if c.MaxRange > 0 && c.MaxRange < time.Minute {
		errs = append(errs, fmt.Errorf("query: MaxRange must be at least one minute (one bucket), got %s", c.MaxRange))
	}
	if c.WatchPollInterval < 0 {
		errs = append(errs, fmt.Errorf("query: WatchPollInterval must not be negative, got %s", c.WatchPollInterval))
	}
	if c.WatchHeartbeat < 0 {
		errs = append(errs, fmt.Errorf("query: WatchHeartbeat must not be negative, got %s", c.WatchHeartbeat))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.MaxPoints == 0 {
		c.MaxPoints = DefaultMaxPoints
	}
	if c.MaxRange == 0 {
		c.MaxRange = DefaultMaxRange
	}
	if c.WatchPollInterval == 0 {
		c.WatchPollInterval = DefaultWatchPollInterval
	}
	if c.WatchHeartbeat == 0 {
		c.WatchHeartbeat = DefaultWatchHeartbeat
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Names of the RPCs, as metric labels.
const (
	rpcGetTimeSeries   = "GetTimeSeries"
	rpcWatchTimeSeries = "WatchTimeSeries"
)

// Service implements queryv1.QueryServiceServer. It is safe for concurrent
// use and starts nothing: a watch's work lives and ends with its stream.
type Service struct {
	queryv1.UnimplementedQueryServiceServer

	cfg    Config
	store  Store
	logger *slog.Logger

	// readSeconds observes store reads by RPC; a watch reads once per refresh.
	readSeconds *prometheus.HistogramVec
	// watches counts the open watch streams, each of which reads the store
	// on every refresh.
	watches prometheus.Gauge
}

var _ queryv1.QueryServiceServer = (*Service)(nil)

// New returns a query service over store. logger may be nil (no logs) and
// reg may be nil (metrics are kept but not exported).
func New(cfg Config, store Store, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("query: store is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:    cfg.withDefaults(),
		store:  store,
		logger: logger,
		readSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "abacus_query_read_duration_seconds",
			Help:    "Time to read one series from the store, by RPC; a watch reads once per refresh.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms to 8 s
		}, []string{"rpc"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_query_watches",
			Help: "Open WatchTimeSeries streams.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.readSeconds, s.watches} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("query: register metrics: %w", err)
			}
		}
	}
	return s, nil
}
