package config

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsEnvAndDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c Config) {
				require.Equal(t, ":9090", c.GRPCAddr)
				require.Equal(t, ":8080", c.HTTPAddr)
				require.Equal(t, AllRoles, c.Roles)
				require.Equal(t, 3*time.Second, c.AuthCacheTTL)
				require.Equal(t, 90*24*time.Hour, c.Limits.RawRetention)
				require.Equal(t, tenancy.DefaultLimits().RollupRetention, c.Limits.RollupRetention)
				require.Equal(t, time.Hour, c.RetentionInterval)
			},
		},
		{
			name: "retention",
			env: map[string]string{
				"ABACUS_DEFAULT_RAW_RETENTION": "720h", "ABACUS_DEFAULT_ROLLUP_RETENTION": "8760h",
				"ABACUS_RETENTION_INTERVAL": "0",
			},
			check: func(t *testing.T, c Config) {
				require.Equal(t, 30*24*time.Hour, c.Limits.RawRetention)
				require.Equal(t, 365*24*time.Hour, c.Limits.RollupRetention)
				require.Zero(t, c.RetentionInterval, "0 disables the retention job")
				require.NoError(t, c.ValidateDev())
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"ABACUS_GRPC_ADDR": "127.0.0.1:1", "ABACUS_HTTP_ADDR": "127.0.0.1:2",
				"ABACUS_KAFKA_BROKERS": "a:9092, b:9092,", "ABACUS_ROLES": "ingest,query",
				"ABACUS_ADMIN_TOKEN": "0123456789abcdef", "ABACUS_DATA_DIR": "/tmp/x",
				"ABACUS_ROLLUP_APPLY_LANES": "4", "ABACUS_ROLLUP_MAX_BATCH_EVENTS": "5000",
			},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "127.0.0.1:1", c.GRPCAddr)
				require.Equal(t, "127.0.0.1:2", c.HTTPAddr)
				require.Equal(t, []string{"a:9092", "b:9092"}, c.KafkaBrokers)
				require.Equal(t, []Role{RoleIngest, RoleQuery}, c.Roles)
				require.True(t, c.Has(RoleQuery))
				require.False(t, c.Has(RoleRollup))
				require.Equal(t, "/tmp/x", c.DataDir)
				require.Equal(t, 4, c.RollupApplyLanes)
				require.Equal(t, 5000, c.RollupMaxBatchEvents)
			},
		},
		{
			name: "flag wins over environment",
			args: []string{"--grpc-addr", "127.0.0.1:7"},
			env:  map[string]string{"ABACUS_GRPC_ADDR": "127.0.0.1:1"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "127.0.0.1:7", c.GRPCAddr)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("test", tc.args, env(tc.env), io.Discard)
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestParseRejectsBadValues(t *testing.T) {
	t.Parallel()
	_, err := Parse("test", nil, env(map[string]string{"ABACUS_ROLES": "ingest,nope", "ABACUS_LOG_LEVEL": "loud"}), io.Discard)
	require.ErrorContains(t, err, `unknown role "nope"`)
	require.ErrorContains(t, err, "log level")

	_, err = Parse("test", nil, env(map[string]string{"ABACUS_SHUTDOWN_TIMEOUT": "soon"}), io.Discard)
	require.ErrorContains(t, err, "ABACUS_SHUTDOWN_TIMEOUT")

	_, err = Parse("test", []string{"extra"}, env(nil), io.Discard)
	require.ErrorContains(t, err, "unexpected arguments")
}

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	c := Default()
	c.GRPCAddr = "nonsense"
	c.AdminToken = "short"
	c.AuthCacheTTL = time.Minute
	c.KafkaPartitions = 0
	c.RollupApplyLanes = 0
	c.RollupMaxBatchEvents = 10
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"grpc addr", "database URL", "redis URL", "kafka brokers", "admin token", "auth cache TTL",
		"kafka partitions", "rollup apply lanes", "rollup max batch events"} {
		require.Contains(t, err.Error(), want)
	}
	require.GreaterOrEqual(t, strings.Count(err.Error(), "\n"), 8)

	dev := Default()
	require.NoError(t, dev.ValidateDev(), "dev mode needs no configuration")
	require.NoError(t, dev.Limits.Validate(), "the default limits are valid")
	dev.AdminToken = "short"
	require.ErrorContains(t, dev.ValidateDev(), "admin token")
}

func TestValidateRetention(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "shortest interval", env: map[string]string{"ABACUS_RETENTION_INTERVAL": "1m"}},
		{name: "longest interval", env: map[string]string{"ABACUS_RETENTION_INTERVAL": "24h"}},
		{name: "interval too short", env: map[string]string{"ABACUS_RETENTION_INTERVAL": "59s"},
			wantErr: "retention interval must be 0 (disabled) or 1m0s-24h0m0s, got 59s"},
		{name: "interval too long", env: map[string]string{"ABACUS_RETENTION_INTERVAL": "25h"},
			wantErr: "retention interval must be 0 (disabled) or 1m0s-24h0m0s, got 25h0m0s"},
		{name: "negative interval", env: map[string]string{"ABACUS_RETENTION_INTERVAL": "-1h"}, wantErr: "retention interval"},
		{name: "raw retention within the past window", env: map[string]string{"ABACUS_DEFAULT_RAW_RETENTION": "100h"},
			wantErr: "default limits: raw retention must be at least the timestamp past window (168h0m0s) + 24h0m0s, got 100h0m0s"},
		{name: "a longer past window needs a longer raw retention",
			env:     map[string]string{"ABACUS_EVENT_PAST_WINDOW": "2160h"},
			wantErr: "raw retention must be at least the timestamp past window (2160h0m0s)"},
		{name: "rollups kept shorter than raw events",
			env:     map[string]string{"ABACUS_DEFAULT_RAW_RETENTION": "4000h", "ABACUS_DEFAULT_ROLLUP_RETENTION": "3000h"},
			wantErr: "rollup retention must be at least the raw retention (4000h0m0s), got 3000h0m0s"},
		{name: "raw retention over ten years", env: map[string]string{"ABACUS_DEFAULT_RAW_RETENTION": "87661h", "ABACUS_DEFAULT_ROLLUP_RETENTION": "87661h"},
			wantErr: "raw retention must be at most 87660h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("test", nil, env(tt.env), io.Discard)
			require.NoError(t, err)
			err = c.ValidateDev()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}

	_, err := Parse("test", nil, env(map[string]string{"ABACUS_DEFAULT_RAW_RETENTION": "90d"}), io.Discard)
	require.ErrorContains(t, err, "ABACUS_DEFAULT_RAW_RETENTION", "durations use Go's units, up to hours")
}
