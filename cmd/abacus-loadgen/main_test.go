package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abacus-analytics/abacus/bench/loadgen"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
)

func noEnv(string) string { return "" }

func TestParseLoadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
		check   func(t *testing.T, f loadFlags)
	}{
		{
			name: "keys file and every knob",
			args: []string{"--keys-file", keys, "--target", "localhost:7", "--rate", "1000", "--batch-size", "50", "--streams", "3",
				"--in-flight", "2", "--duration", "10s", "--warmup", "2s", "--duplicate-ratio", "0.1", "--zipf-s", "0", "--users", "10",
				"--seed", "9", "--run-id", "abc", "--drain-timeout", "1s", "--progress", "0", "--json"},
			check: func(t *testing.T, f loadFlags) {
				c := f.cfg
				require.Equal(t, "localhost:7", c.Target)
				require.InDelta(t, 1000, c.Rate, 0)
				require.Equal(t, 50, c.BatchSize)
				require.Equal(t, 3, c.Streams)
				require.Equal(t, 2, c.InFlight)
				require.Equal(t, 10*time.Second, c.Duration)
				require.Equal(t, 2*time.Second, c.Warmup)
				require.InDelta(t, 0.1, c.DuplicateRatio, 0)
				require.Zero(t, c.ZipfS)
				require.Equal(t, 10, c.Users)
				require.Equal(t, uint64(9), c.Seed)
				require.Equal(t, "abc", c.RunID)
				require.Equal(t, time.Second, c.DrainTimeout)
				require.Zero(t, f.progress)
				require.True(t, f.json)
				require.Empty(t, c.Tenants, "read when the run starts")
			},
		},
		{
			name: "admin token from the environment",
			args: []string{"--tenants", "3", "--tenant-rate", "500000"},
			env:  map[string]string{"ABACUS_ADMIN_TOKEN": "tok-0123456789abcdef"},
			check: func(t *testing.T, f loadFlags) {
				require.Equal(t, "tok-0123456789abcdef", f.adminToken)
				require.Equal(t, "127.0.0.1:9090", f.adminTarget, "defaults to the target")
				require.Equal(t, 3, f.tenants)
				require.Len(t, f.cfg.RunID, 8, "a run id is chosen for the tenant names")
			},
		},
		{name: "no tenants", args: nil, wantErr: []string{"no tenants: give --keys-file or --admin-token"}},
		{name: "both sources", args: []string{"--keys-file", keys, "--admin-token", "x"}, wantErr: []string{"either --keys-file or an admin token"}},
		{name: "write keys without admin", args: []string{"--keys-file", keys, "--write-keys", "k"}, wantErr: []string{"--write-keys needs --admin-token"}},
		{
			name: "every problem at once",
			args: []string{"--admin-token", "x", "--admin-target", "192.0.2.1:1", "--tenants", "0", "--tenant-rate", "1e9", "--rate", "-5",
				"--batch-size", "20000", "--duration", "1s", "--warmup", "2s", "--progress", "-1s", "--log-level", "loud", "--run-id", "UPPER", "extra"},
			wantErr: []string{"unexpected arguments: extra", "admin target", "tenants is 0", "tenant rate is 1e+09", "rate is -5", "batch size is 20000",
				"warmup is 2s", "progress interval is -1s", `log level "loud"`, `run id "UPPER"`},
		},
		{name: "remote target refused", args: []string{"--keys-file", keys, "--target", "192.0.2.1:9090"}, wantErr: []string{"not a loopback address"}},
		{name: "remote target allowed", args: []string{"--keys-file", keys, "--target", "192.0.2.1:9090", "--allow-non-loopback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string { return tt.env[k] }
			var stderr bytes.Buffer
			f, err := parseLoadFlags(tt.args, getenv, &stderr)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBare runs the bare-server subcommand and returns its printed address.
func startBare(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"bare-server", "--listen", "127.0.0.1:0", "--print-addr"}, noEnv, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		require.Equal(t, exitOK, <-done, "stderr: %s", stderr.String())
	})
	require.Eventually(t, func() bool { return strings.HasSuffix(stdout.String(), "\n") }, 10*time.Second, 10*time.Millisecond)
	addr := strings.TrimSpace(stdout.String())
	_, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return addr
}

func TestRun_KeysFileAgainstBareServer(t *testing.T) {
	t.Parallel()
	addr := startBare(t)
	keys := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(keys, []byte("# tenants\nacme abk_1\nglobex abk_2\n"), 0o600))

	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--target", addr, "--keys-file", keys, "--duration", "1s", "--warmup", "200ms",
		"--batch-size", "50", "--streams", "2", "--progress", "200ms", "--json", "--run-id", "clitest"}, noEnv, &stdout, &stderr)
	require.Equal(t, exitOK, code, "stderr: %s", stderr.String())

	var rep loadgen.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "stdout is the JSON report: %s", stdout.String())
	require.Equal(t, "clitest", rep.RunID)
	require.Equal(t, 2, rep.Tenants)
	require.Positive(t, rep.Total.Events)
	require.Equal(t, rep.Total.Events, rep.Total.Accepted, "sent = accepted against the bare server")
	require.Zero(t, rep.Total.Unanswered)
	require.Contains(t, stderr.String(), "accepted", "progress lines go to stderr")
	require.NotContains(t, stderr.String(), "abk_", "keys are never logged")
}

func TestRun_TextReport(t *testing.T) {
	t.Parallel()
	addr := startBare(t)
	keys := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(keys, []byte("acme abk_1\n"), 0o600))
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--target", addr, "--keys-file", keys, "--duration", "500ms", "--warmup", "100ms", "--progress", "0"}, noEnv, &stdout, &stderr)
	require.Equal(t, exitOK, code, "stderr: %s", stderr.String())
	require.Contains(t, stdout.String(), "batch-ack latency")
	require.Contains(t, stdout.String(), "measured window")
	require.NotContains(t, stderr.String(), "in flight", "no progress lines with --progress 0")
}

func TestRun_Errors(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitUsage, run(t.Context(), []string{"--rate", "x"}, noEnv, &stdout, &stderr))
	require.Equal(t, exitOK, run(t.Context(), []string{"-h"}, noEnv, &stdout, &stderr))
	require.Equal(t, exitOK, run(t.Context(), []string{"help"}, noEnv, &stdout, &stderr))
	require.Equal(t, exitFail, run(t.Context(), []string{"--keys-file", filepath.Join(t.TempDir(), "missing")}, noEnv, &stdout, &stderr))
	require.Contains(t, stderr.String(), "keys file")
	require.Equal(t, exitUsage, run(t.Context(), []string{"bare-server", "--listen", "0.0.0.0:0"}, noEnv, &stdout, &stderr))
	require.Contains(t, stderr.String(), "authenticates nobody")
}

// cliAdmin creates tenants and keys and does not know the limit fields.
type cliAdmin struct {
	adminv1.UnimplementedAdminServiceServer
}

func (cliAdmin) CreateTenant(_ context.Context, req *adminv1.CreateTenantRequest) (*adminv1.CreateTenantResponse, error) {
	return &adminv1.CreateTenantResponse{Tenant: &adminv1.Tenant{TenantId: req.GetTenantId()}}, nil
}

func (cliAdmin) CreateApiKey(_ context.Context, req *adminv1.CreateApiKeyRequest) (*adminv1.CreateApiKeyResponse, error) {
	return &adminv1.CreateApiKeyResponse{Secret: "abk_" + req.GetTenantId()}, nil
}

func (cliAdmin) UpdateTenant(context.Context, *adminv1.UpdateTenantRequest) (*adminv1.UpdateTenantResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not yet")
}

func TestRun_CreatesTenants(t *testing.T) {
	t.Parallel()
	ingest := startBare(t)
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, cliAdmin{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	keysPath := filepath.Join(t.TempDir(), "created")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--target", ingest, "--admin-target", lis.Addr().String(), "--tenants", "3", "--tenant-rate", "1000000",
		"--write-keys", keysPath, "--run-id", "cli", "--duration", "500ms", "--warmup", "100ms", "--json", "--progress", "0"},
		func(k string) string {
			if k == "ABACUS_ADMIN_TOKEN" {
				return "admin-token-0123456789"
			}
			return ""
		}, &stdout, &stderr)
	require.Equal(t, exitOK, code, "stderr: %s", stderr.String())
	require.Contains(t, stderr.String(), "does not accept tenant rate limits", "UpdateTenant unimplemented is a warning")
	require.NotContains(t, stderr.String(), "admin-token-0123456789")

	file, err := os.Open(keysPath)
	require.NoError(t, err)
	defer file.Close()
	st, err := file.Stat()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	keys, err := loadgen.ParseKeys(file)
	require.NoError(t, err)
	require.Equal(t, []loadgen.TenantKey{
		{Tenant: "loadgen-cli-01", Secret: "abk_loadgen-cli-01"},
		{Tenant: "loadgen-cli-02", Secret: "abk_loadgen-cli-02"},
		{Tenant: "loadgen-cli-03", Secret: "abk_loadgen-cli-03"},
	}, keys)

	var rep loadgen.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	require.Equal(t, 3, rep.Tenants)
	require.Equal(t, rep.Total.Events, rep.Total.Accepted)
}
