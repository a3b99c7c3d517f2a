package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	tenantv1 "github.com/abacus-analytics/abacus/gen/abacus/tenant/v1"
)

// Limits of [ProvisionConfig].
const (
	// MaxProvisionTenants bounds the tenants one Provision creates.
	MaxProvisionTenants = 1000
	// MaxTenantRate is the largest events_per_second the admin API accepts.
	MaxTenantRate = 10_000_000
	// provisionConcurrency is how many tenants are set up at once.
	provisionConcurrency = 8
)

// ProvisionConfig says which tenants [Provision] creates.
type ProvisionConfig struct {
	// RunID names the tenants: loadgen-<RunID>-01, -02, ... (required, see Config.RunID).
	RunID string
	// Tenants is how many tenants to create, 1 to MaxProvisionTenants.
	Tenants int
	// TenantRate, when positive, is set as each tenant's events_per_second (at most
	// MaxTenantRate), with a burst of two seconds of it and as many requests per second as
	// events, so that the limits never bind a throughput run. Zero keeps the defaults.
	TenantRate float64
}

// Validate reports every problem of the configuration, joined.
func (c ProvisionConfig) Validate() error {
	var errs []error
	if c.RunID == "" || !validRunID(c.RunID) {
		errs = append(errs, fmt.Errorf("loadgen: provision: run id %q must be 1 to %d characters of [a-z0-9]", c.RunID, MaxRunIDLen))
	}
	if c.Tenants < 1 || c.Tenants > MaxProvisionTenants {
		errs = append(errs, fmt.Errorf("loadgen: provision: tenants is %d, must be 1 to %d", c.Tenants, MaxProvisionTenants))
	}
	if c.TenantRate < 0 || c.TenantRate > MaxTenantRate || math.IsNaN(c.TenantRate) {
		errs = append(errs, fmt.Errorf("loadgen: provision: tenant rate is %v events/s, must be 0 to %d", c.TenantRate, MaxTenantRate))
	}
	return errors.Join(errs...)
}

// TenantName is the id of the i-th (0-based) tenant Provision creates for run runID.
func TenantName(runID string, i int) string { return fmt.Sprintf("loadgen-%s-%02d", runID, i+1) }

// Provision creates cfg.Tenants tenants through the AdminService on conn, each with an ingest
// API key, and when cfg.TenantRate is set raises their rate limits. It returns the keys in
// tenant order. A server that does not support the limit fields (UNIMPLEMENTED or
// INVALID_ARGUMENT from UpdateTenant) is logged as a warning and the tenants keep the default
// limits. adminToken is sent as a bearer token and never logged.
func Provision(ctx context.Context, conn grpc.ClientConnInterface, adminToken string, cfg ProvisionConfig, logger *slog.Logger) ([]TenantKey, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client := adminv1.NewAdminServiceClient(conn)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)

	var limitsOnce sync.Once
	limitsSupported := true
	var limitsMu sync.Mutex
	keys := make([]TenantKey, cfg.Tenants)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(provisionConcurrency)
	for i := range cfg.Tenants {
		g.Go(func() error {
			tenant := TenantName(cfg.RunID, i)
			if _, err := client.CreateTenant(gctx, &adminv1.CreateTenantRequest{
				TenantId:    tenant,
				DisplayName: "abacus-loadgen run " + cfg.RunID,
			}); err != nil {
				return fmt.Errorf("loadgen: provision: create tenant %s: %w", tenant, err)
			}
			resp, err := client.CreateApiKey(gctx, &adminv1.CreateApiKeyRequest{
				TenantId:    tenant,
				Scopes:      []adminv1.Scope{adminv1.Scope_SCOPE_INGEST},
				DisplayName: "abacus-loadgen run " + cfg.RunID,
			})
			if err != nil {
				return fmt.Errorf("loadgen: provision: create API key of %s: %w", tenant, err)
			}
			if resp.GetSecret() == "" {
				return fmt.Errorf("loadgen: provision: create API key of %s: the response has no secret", tenant)
			}
			keys[i] = TenantKey{Tenant: tenant, Secret: resp.GetSecret()}

			limitsMu.Lock()
			update := cfg.TenantRate > 0 && limitsSupported
			limitsMu.Unlock()
			if !update {
				return nil
			}
			err = setRate(gctx, client, tenant, cfg.TenantRate)
			if c := status.Code(err); c == codes.Unimplemented || c == codes.InvalidArgument {
				limitsMu.Lock()
				limitsSupported = false
				limitsMu.Unlock()
				limitsOnce.Do(func() {
					logger.WarnContext(ctx, "the server does not accept tenant rate limits; the tenants keep the default limits",
						"tenant_id", tenant, "code", c.String(), "error", status.Convert(err).Message())
				})
				return nil
			}
			if err != nil {
				return fmt.Errorf("loadgen: provision: set limits of %s: %w", tenant, err)
			}
			return waitForRate(gctx, conn, keys[i], cfg.TenantRate)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	logger.InfoContext(ctx, "tenants created", "tenants", cfg.Tenants, "run_id", cfg.RunID,
		"tenant_rate", cfg.TenantRate, "limits_set", cfg.TenantRate > 0 && limitsSupported)
	return keys, nil
}

// maxLimitsWait bounds how long Provision waits for new limits to reach the ingest nodes.
const maxLimitsWait = 30 * time.Second

// waitForRate waits until the tenant sees its new events-per-second limit (every node reloads
// overrides periodically), so that a run does not start under the default limits. A server
// without the TenantService is not waited for.
func waitForRate(ctx context.Context, conn grpc.ClientConnInterface, key TenantKey, rate float64) error {
	client := tenantv1.NewTenantServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, maxLimitsWait)
	defer cancel()
	tctx := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+key.Secret))
	for {
		resp, err := client.GetLimits(tctx, &tenantv1.GetLimitsRequest{})
		switch {
		case status.Code(err) == codes.Unimplemented:
			return nil
		case err == nil && resp.GetLimits().GetEventsPerSecond() == rate:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: provision: the limits of %s did not take effect within %s (last error: %v)", key.Tenant, maxLimitsWait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setRate raises a tenant's event and request rates to rate per second.
func setRate(ctx context.Context, client adminv1.AdminServiceClient, tenant string, rate float64) error {
	burst := int64(min(2*rate, 100_000_000))
	_, err := client.UpdateTenant(ctx, &adminv1.UpdateTenantRequest{
		Tenant: &adminv1.Tenant{
			TenantId: tenant,
			Limits: &adminv1.TenantLimits{
				EventsPerSecond:   proto.Float64(rate),
				EventsBurst:       proto.Int64(max(burst, 1)),
				RequestsPerSecond: proto.Float64(min(max(rate, 1), 1_000_000)),
			},
		},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"limits.events_per_second", "limits.events_burst", "limits.requests_per_second"}},
	})
	return err
}
