package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/internal/config"
	"github.com/abacus-analytics/abacus/internal/devstack"
)

// DemoTenant is the tenant `abacusd dev` creates.
const DemoTenant = "demo"

// RunDev is `abacusd dev`: it starts whatever dependency is not configured (a private
// PostgreSQL cluster, redis-server and in-process Kafka-protocol broker under cfg.DataDir),
// runs every role, creates the demo tenant and prints a working API key, the admin token and
// commands to try. State is kept in cfg.DataDir and reused on the next start.
func RunDev(ctx context.Context, cfg config.Config, logger *slog.Logger, out io.Writer) error {
	if err := cfg.ValidateDev(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if cfg.AdminToken == "" {
		if cfg.AdminToken, err = persistentSecret(filepath.Join(dataDir, "admin-token")); err != nil {
			return err
		}
	}

	stack, err := devstack.Start(ctx, devstack.Config{
		DataDir:      dataDir,
		DatabaseURL:  cfg.DatabaseURL,
		RedisURL:     cfg.RedisURL,
		KafkaBrokers: cfg.KafkaBrokers,
	}, logger)
	if err != nil {
		return fmt.Errorf("start dev stack: %w", err)
	}
	defer func() {
		if cerr := stack.Close(); cerr != nil {
			logger.Warn("dev stack stop incomplete", "error", cerr)
		}
	}()
	cfg.DatabaseURL, cfg.RedisURL, cfg.KafkaBrokers = stack.DatabaseURL, stack.RedisURL, stack.KafkaBrokers

	a, err := New(cfg, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	select {
	case err := <-done:
		return err
	case <-a.Ready():
	}
	secret, err := bootstrapDemo(ctx, a.GRPCAddr(), cfg.AdminToken, filepath.Join(dataDir, "demo-api-key"))
	if err != nil {
		cancel()
		<-done
		return fmt.Errorf("create demo tenant: %w", err)
	}
	if err := printBanner(out, a, cfg.AdminToken, secret); err != nil {
		logger.Warn("could not print the welcome banner", "error", err)
	}
	return <-done
}

// bootstrapDemo creates the demo tenant and an ingest+query key through the admin API (the same
// path an operator uses). The key is kept in keyFile so every start prints the same one; a new
// key is made when the file is missing or the key no longer works.
func bootstrapDemo(ctx context.Context, grpcAddr, adminToken, keyFile string) (string, error) {
	conn, err := grpc.NewClient(dialAddr(grpcAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	client := adminv1.NewAdminServiceClient(conn)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)

	_, err = client.CreateTenant(ctx, &adminv1.CreateTenantRequest{TenantId: DemoTenant, DisplayName: "Demo tenant"})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return "", err
	}
	if b, err := os.ReadFile(keyFile); err == nil {
		secret := strings.TrimSpace(string(b))
		if keyUsable(ctx, client, secret) {
			return secret, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	resp, err := client.CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{
		TenantId:    DemoTenant,
		Scopes:      []adminv1.Scope{adminv1.Scope_SCOPE_INGEST, adminv1.Scope_SCOPE_QUERY},
		DisplayName: "abacusd dev demo key",
	})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(keyFile, []byte(resp.GetSecret()+"\n"), 0o600); err != nil {
		return "", err
	}
	return resp.GetSecret(), nil
}

// keyUsable reports whether the saved demo key is still an active key of the demo tenant.
func keyUsable(ctx context.Context, client adminv1.AdminServiceClient, secret string) bool {
	const prefixAndID = 4 + 16
	if len(secret) < prefixAndID {
		return false
	}
	keyID := secret[4:prefixAndID]
	resp, err := client.ListApiKeys(ctx, &adminv1.ListApiKeysRequest{TenantId: DemoTenant, PageSize: 1000})
	if err != nil {
		return false
	}
	for _, k := range resp.GetApiKeys() {
		if k.GetKeyId() == keyID && k.GetRevokeTime() == nil {
			return true
		}
	}
	return false
}

// persistentSecret returns the secret stored in path, generating and storing one first.
func persistentSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= config.MinAdminTokenLen {
			return s, nil
		}
	}
	secret := "adm_" + rand.Text()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store admin token: %w", err)
	}
	return secret, nil
}

func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

var banner = template.Must(template.New("banner").Parse(`
Abacus is running (development mode: private PostgreSQL, Redis and an in-process Kafka-protocol
broker under {{.DataDir}}; not for production).

  gRPC      {{.GRPC}}
  HTTP      http://{{.HTTP}}   (REST gateway, /metrics, /healthz, /readyz, /openapi.json)

  Tenant         {{.Tenant}}
  API key        {{.Key}}
                 (scopes: SCOPE_INGEST, SCOPE_QUERY)
  Admin token    {{.Admin}}

Try it:

  export ABACUS_KEY={{.Key}}

  curl -s -X POST http://{{.HTTP}}/v1/events \
    -H "authorization: Bearer $ABACUS_KEY" -H 'content-type: application/json' \
    -d '{"events":[{"event_id":"e-1","type":"page_view","user_id":"u-1","timestamp":"'$(date -u +%FT%TZ)'"}]}'

  curl -s -G http://{{.HTTP}}/v1/timeseries -H "authorization: Bearer $ABACUS_KEY" \
    --data-urlencode event_type=page_view --data-urlencode metric=METRIC_COUNT \
    --data-urlencode granularity=GRANULARITY_MINUTE \
    --data-urlencode start=$(date -u -d '-10 min' +%FT%TZ) --data-urlencode end=$(date -u -d '+1 min' +%FT%TZ)

  ./bin/grpcurl -plaintext -H "authorization: Bearer $ABACUS_KEY" \
    -d '{"events":[{"event_id":"e-2","type":"page_view","timestamp":"'$(date -u +%FT%TZ)'"}]}' \
    {{.GRPC}} abacus.ingest.v1.IngestService/Ingest

  curl -s http://{{.HTTP}}/v1/admin/tenants -H 'authorization: Bearer {{.Admin}}'

(make tools puts grpcurl in ./bin.) Press Ctrl-C to stop; state is kept for the next start.
`))

func printBanner(out io.Writer, a *App, adminToken, key string) error {
	return banner.Execute(out, map[string]string{
		"DataDir": a.cfg.DataDir,
		"GRPC":    dialAddr(a.GRPCAddr()),
		"HTTP":    dialAddr(a.HTTPAddr()),
		"Tenant":  DemoTenant,
		"Key":     key,
		"Admin":   adminToken,
	})
}
