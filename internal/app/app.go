// Package app wires abacusd together: it connects to PostgreSQL, Redis and Kafka, builds the
// services of the configured roles behind one gRPC server and its REST gateway, runs the rollup
// consumer and the retention job, and stops all of it gracefully.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/abacus-analytics/abacus/auth"
	"github.com/abacus-analytics/abacus/eventlog"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
	queryv1 "github.com/abacus-analytics/abacus/gen/abacus/query/v1"
	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
	"github.com/abacus-analytics/abacus/internal/config"
	"github.com/abacus-analytics/abacus/internal/grpcserver"
	"github.com/abacus-analytics/abacus/internal/httpserver"
	"github.com/abacus-analytics/abacus/ratelimit"
	"github.com/abacus-analytics/abacus/services/admin"
	"github.com/abacus-analytics/abacus/services/ingest"
	"github.com/abacus-analytics/abacus/services/query"
	"github.com/abacus-analytics/abacus/services/retention"
	"github.com/abacus-analytics/abacus/services/rollup"
	"github.com/abacus-analytics/abacus/services/tenant"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// App is one abacusd process.
type App struct {
	cfg    config.Config
	logger *slog.Logger
	reg    *prometheus.Registry

	ready    chan struct{}
	mu       sync.Mutex
	grpcAddr string
	httpAddr string
}

// New checks the configuration; nothing connects or listens until Run.
func New(cfg config.Config, logger *slog.Logger, reg *prometheus.Registry) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return &App{cfg: cfg, logger: logger, reg: reg, ready: make(chan struct{})}, nil
}

// Ready is closed once both servers listen.
func (a *App) Ready() <-chan struct{} { return a.ready }

// GRPCAddr is the address the gRPC server listens on (valid after Ready).
func (a *App) GRPCAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grpcAddr
}

// HTTPAddr is the address the HTTP server listens on (valid after Ready).
func (a *App) HTTPAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// Run connects, serves and, when ctx is done, stops gracefully: health NOT_SERVING → ingest
// streams end after answering their batches in flight → drain the HTTP server → GracefulStop the
// gRPC server (forced after ShutdownTimeout) → flush the producer → close the pools. It returns nil after a clean stop.
func (a *App) Run(ctx context.Context) (err error) {
	cfg, logger := a.cfg, a.logger
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: int32(cfg.DatabaseMaxConns), StatementTimeout: cfg.StatementTimeout}, logger)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if cfg.AutoMigrate {
		if err := postgres.Migrate(ctx, db); err != nil {
			return fmt.Errorf("migrate database: %w", err)
		}
	}

	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	// Deadlines of contexts apply to socket reads too, so a call that gave up
	// also frees its connection.
	redisOpts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		logger.WarnContext(ctx, "redis not reachable at start; continuing", "error", err)
	}

	if err := ensureTopics(ctx, cfg, logger); err != nil {
		return err
	}

	// Every tenant's limits: the configured defaults with the overrides stored through the admin
	// API, reloaded in the background. The first load happens before anything is served.
	overrides, err := tenancy.NewOverrides(tenancy.OverridesConfig{Defaults: cfg.Limits, Refresh: cfg.LimitsRefresh}, db, logger, a.reg)
	if err != nil {
		return fmt.Errorf("tenant limits: %w", err)
	}
	if err := overrides.Reload(ctx); err != nil {
		return fmt.Errorf("load tenant limits: %w", err)
	}
	limiter, err := ratelimit.New(rdb, ratelimit.Config{LocalShare: cfg.RateLimitLocalShare}, logger, a.reg)
	if err != nil {
		return fmt.Errorf("rate limiter: %w", err)
	}
	quota, err := ratelimit.NewQuota(rdb, ratelimit.QuotaConfig{}, logger, a.reg)
	if err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	admitter, err := ratelimit.NewAdmitter(limiter, quota)
	if err != nil {
		return fmt.Errorf("admission: %w", err)
	}
	guardCfg := ratelimit.DefaultAuthFailureConfig()
	guardCfg.Limit = ratelimit.Limit{Rate: cfg.AuthFailureRate, Burst: cfg.AuthFailureBurst}
	guard, err := ratelimit.NewAuthFailureGuard(limiter, guardCfg)
	if err != nil {
		return fmt.Errorf("auth failure guard: %w", err)
	}
	toucher, err := auth.NewToucher(db, auth.ToucherConfig{}, logger, a.reg)
	if err != nil {
		return fmt.Errorf("api key last use: %w", err)
	}

	var producer *eventlog.Producer
	if cfg.Has(config.RoleIngest) {
		producer, err = eventlog.NewProducer(eventlog.ProducerConfig{
			Brokers:          cfg.KafkaBrokers,
			ClientID:         "abacusd-ingest",
			MaxBufferedBytes: cfg.KafkaBufferBytes,
			Shards:           overrides,
		}, logger, a.reg)
		if err != nil {
			return fmt.Errorf("kafka producer: %w", err)
		}
		defer func() {
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
			defer cancel()
			if cerr := producer.Close(flushCtx); cerr != nil {
				logger.Warn("producer flush on shutdown incomplete", "error", cerr)
			}
		}()
	}

	authn, err := auth.New(auth.Config{AdminToken: cfg.AdminToken, CacheTTL: cfg.AuthCacheTTL, Toucher: toucher}, keyStore{db: db}, logger, a.reg)
	if err != nil {
		return fmt.Errorf("authenticator: %w", err)
	}

	var drains []func() // called first on a graceful stop: long-lived streams end themselves
	policies := grpcserver.PublicMethods()
	var gateways []httpserver.Registrar
	var register []func(*grpc.Server)
	if cfg.Has(config.RoleIngest) {
		svc, err := ingest.New(ingest.Config{
			Limits:         overrides,
			Admitter:       admitter,
			Quota:          quota,
			Keys:           authn,
			ProduceTimeout: cfg.ProduceTimeout,
		}, producer, logger, a.reg)
		if err != nil {
			return fmt.Errorf("ingest service: %w", err)
		}
		ingestPolicy := auth.MethodPolicy{Scope: auth.ScopeIngest}
		policies[ingestv1.IngestService_Ingest_FullMethodName] = ingestPolicy
		policies[ingestv1.IngestService_IngestStream_FullMethodName] = ingestPolicy
		register = append(register, func(s *grpc.Server) { svc.Register(s) })
		drains = append(drains, svc.Drain)
		gateways = append(gateways, ingestv1.RegisterIngestServiceHandler)
	}
	if cfg.Has(config.RoleQuery) {
		lateWindow := func(id tenancy.ID) time.Duration {
			past, _ := overrides.TimestampWindow(id)
			return past
		}
		svc, err := query.New(query.Config{LateWindow: lateWindow}, db, logger, a.reg)
		if err != nil {
			return fmt.Errorf("query service: %w", err)
		}
		queryPolicy := auth.MethodPolicy{Scope: auth.ScopeQuery}
		policies[queryv1.QueryService_GetTimeSeries_FullMethodName] = queryPolicy
		policies[queryv1.QueryService_WatchTimeSeries_FullMethodName] = queryPolicy
		register = append(register, func(s *grpc.Server) { queryv1.RegisterQueryServiceServer(s, svc) })
		gateways = append(gateways, queryv1.RegisterQueryServiceHandler)
	}
	if cfg.Has(config.RoleIngest) || cfg.Has(config.RoleQuery) {
		// Tenants read their own limits and usage with any of their keys.
		svc, err := tenant.New(overrides, quota, logger, nil)
		if err != nil {
			return fmt.Errorf("tenant service: %w", err)
		}
		anyKey := auth.MethodPolicy{AnyTenantKey: true}
		policies[tenantv1.TenantService_GetLimits_FullMethodName] = anyKey
		policies[tenantv1.TenantService_GetUsage_FullMethodName] = anyKey
		register = append(register, func(s *grpc.Server) { tenantv1.RegisterTenantServiceServer(s, svc) })
		gateways = append(gateways, tenantv1.RegisterTenantServiceHandler)
	}
	if cfg.Has(config.RoleAdmin) {
		svc, err := admin.New(admin.Config{}, db, logger, a.reg)
		if err != nil {
			return fmt.Errorf("admin service: %w", err)
		}
		adminPolicy := auth.MethodPolicy{Admin: true}
		for _, m := range adminv1.AdminService_ServiceDesc.Methods {
			policies["/"+adminv1.AdminService_ServiceDesc.ServiceName+"/"+m.MethodName] = adminPolicy
		}
		register = append(register, func(s *grpc.Server) { adminv1.RegisterAdminServiceServer(s, svc) })
		gateways = append(gateways, adminv1.RegisterAdminServiceHandler)
	}

	gs, err := grpcserver.New(grpcserver.Config{
		MaxRecvMsgBytes:  int(cfg.MaxRequestBytes),
		Policies:         policies,
		AuthFailureGuard: guard,
		SelfValidated:    []protoreflect.FullName{(&ingestv1.IngestStreamRequest{}).ProtoReflect().Descriptor().FullName()},
	}, authn, logger, a.reg)
	if err != nil {
		return err
	}
	for _, r := range register {
		r(gs.GRPC)
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	defer grpcLis.Close()
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	defer httpLis.Close()

	// The gateway is a gRPC client of this very server, so REST calls pass the interceptor chain.
	conn, err := grpc.NewClient(loopback(grpcLis.Addr()),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(cfg.MaxRequestBytes)), grpc.MaxCallSendMsgSize(int(cfg.MaxRequestBytes))),
	)
	if err != nil {
		return fmt.Errorf("gateway connection: %w", err)
	}
	defer conn.Close()

	checks := []httpserver.Check{
		{Name: "postgres", Check: db.Ping},
		{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	}
	if producer != nil {
		checks = append(checks, httpserver.Check{Name: "kafka", Check: producer.Ping})
	} else {
		kc, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers...))
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		defer kc.Close()
		checks = append(checks, httpserver.Check{Name: "kafka", Check: kc.Ping})
	}
	handler, err := httpserver.NewHandler(ctx, httpserver.Config{MaxBodyBytes: cfg.MaxRequestBytes}, conn, gateways, checks, a.reg, logger)
	if err != nil {
		return fmt.Errorf("http handler: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	var consumer *rollup.Consumer
	if cfg.Has(config.RoleRollup) {
		// Changed buckets are published to Redis after each commit, for caches and live
		// watchers; a failing Redis never holds the rollup up.
		notifier, err := rollup.NewRedisNotifier(rdb)
		if err != nil {
			return fmt.Errorf("rollup notifier: %w", err)
		}
		consumer, err = rollup.New(rollup.Config{
			Brokers: cfg.KafkaBrokers, Notifier: notifier,
			ApplyLanes: cfg.RollupApplyLanes, MaxBatchEvents: cfg.RollupMaxBatchEvents,
		}, db, logger, a.reg)
		if err != nil {
			return fmt.Errorf("rollup consumer: %w", err)
		}
	}
	// Every rollup process runs the retention job; an advisory lock lets one of them at a time
	// run a round.
	var retentionJob *retention.Job
	if cfg.Has(config.RoleRollup) && cfg.RetentionInterval > 0 {
		retentionJob, err = retention.New(retention.Config{Interval: cfg.RetentionInterval, Defaults: cfg.Limits}, db, logger, a.reg)
		if err != nil {
			return fmt.Errorf("retention job: %w", err)
		}
	}

	a.mu.Lock()
	a.grpcAddr, a.httpAddr = grpcLis.Addr().String(), httpLis.Addr().String()
	a.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := gs.GRPC.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http serve: %w", err)
		}
		return nil
	})
	if consumer != nil {
		g.Go(func() error { return consumer.Run(gctx) })
	}
	if retentionJob != nil {
		g.Go(func() error { return retentionJob.Run(gctx) })
	}
	g.Go(func() error { return overrides.Run(gctx) })
	g.Go(func() error { return quota.Run(gctx) })
	g.Go(func() error { return toucher.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		a.shutdown(context.WithoutCancel(ctx), gs, httpSrv, drains)
		return nil
	})
	gs.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	logger.InfoContext(ctx, "abacusd serving", "grpc_addr", a.GRPCAddr(), "http_addr", a.HTTPAddr(), "roles", cfg.Roles, "timescale", db.Timescale())
	close(a.ready)
	return g.Wait()
}

// shutdown stops taking new work and drains what is in flight, bounded by ShutdownTimeout.
func (a *App) shutdown(ctx context.Context, gs *grpcserver.Server, httpSrv *http.Server, drains []func()) {
	a.logger.Info("abacusd stopping: draining requests", "timeout", a.cfg.ShutdownTimeout.String())
	gs.Health.Shutdown() // NOT_SERVING, so load balancers stop routing here
	for _, drain := range drains {
		drain() // ingest streams answer their batches in flight and end with UNAVAILABLE
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(ctx); err != nil {
		a.logger.Warn("http drain incomplete", "error", err)
	}
	stopped := make(chan struct{})
	go func() {
		gs.GRPC.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		a.logger.Warn("grpc drain timed out; closing remaining streams")
		gs.GRPC.Stop()
		<-stopped
	}
}

// loopback turns a listen address such as [::]:9090 into one this process can dial.
func loopback(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		_, port, _ := net.SplitHostPort(addr.String())
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr.String()
}
