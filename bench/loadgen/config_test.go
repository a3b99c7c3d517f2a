package loadgen

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{
		Target:  "127.0.0.1:9090",
		Tenants: []TenantKey{{Tenant: "acme", Secret: "abk_secret"}},
		ZipfS:   DefaultZipfS,
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // every one must be in the error; none means valid
	}{
		{name: "valid with defaults", modify: func(*Config) {}},
		{name: "localhost", modify: func(c *Config) { c.Target = "localhost:1" }},
		{name: "ipv6 loopback", modify: func(c *Config) { c.Target = "[::1]:9090" }},
		{name: "remote refused", modify: func(c *Config) { c.Target = "10.0.0.1:9090" }, want: []string{"not a loopback address"}},
		{name: "remote allowed", modify: func(c *Config) { c.Target = "10.0.0.1:9090"; c.AllowNonLoopback = true }},
		{name: "no port", modify: func(c *Config) { c.Target = "127.0.0.1"; c.AllowNonLoopback = true }, want: []string{"missing port"}},
		{name: "empty host", modify: func(c *Config) { c.Target = ":9090" }, want: []string{"has no host"}},
		{name: "no tenants", modify: func(c *Config) { c.Tenants = nil }, want: []string{"no tenants"}},
		{name: "tenant without key", modify: func(c *Config) { c.Tenants = []TenantKey{{Tenant: "a"}} }, want: []string{"tenant 0 (a) has no API key"}},
		{name: "key with newline", modify: func(c *Config) { c.Tenants = []TenantKey{{Tenant: "a", Secret: "x\ny"}} }, want: []string{"cannot go into a header"}},
		{
			name: "every numeric problem at once",
			modify: func(c *Config) {
				c.ZipfS = math.NaN()
				c.Rate = -1
				c.BatchSize = MaxBatchSize + 1
				c.Duration = -time.Second
				c.Streams = MaxStreams + 1
				c.InFlight = -1
				c.Users = MaxUsers + 1
				c.DuplicateRatio = 1.5
				c.DrainTimeout = -1
				c.ProgressInterval = -1
				c.MaxMessageBytes = -1
			},
			want: []string{"zipf s", "rate is -1", "batch size is 10001", "duration is -1s", "streams is 4097", "in-flight is -1", "users is 100000001", "duplicate ratio is 1.5", "drain timeout", "progress interval", "max message bytes"},
		},
		{name: "infinite rate", modify: func(c *Config) { c.Rate = math.Inf(1) }, want: []string{"must be finite"}},
		{name: "warmup as long as the run", modify: func(c *Config) { c.Duration = 5 * time.Second; c.Warmup = 5 * time.Second }, want: []string{"warmup is 5s"}},
		{name: "warmup longer than the default duration", modify: func(c *Config) { c.Warmup = time.Hour }, want: []string{"warmup is 1h0m0s"}},
		{name: "run id upper case", modify: func(c *Config) { c.RunID = "ABC" }, want: []string{`run id "ABC"`}},
		{name: "run id too long", modify: func(c *Config) { c.RunID = "abcdefghijklmnopq" }, want: []string{"at most 16"}},
		{name: "too much memory", modify: func(c *Config) { c.Streams = 4096; c.InFlight = 1024; c.BatchSize = 10000 }, want: []string{"MiB of batches"}},
		{name: "batch larger than a message", modify: func(c *Config) { c.BatchSize = 10000; c.MaxMessageBytes = 1 << 20 }, want: []string{"exceeds max message bytes"}},
		{name: "uniform load", modify: func(c *Config) { c.ZipfS = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestConfig_Defaults(t *testing.T) {
	t.Parallel()
	c := validConfig().withDefaults()
	require.Equal(t, DefaultBatchSize, c.BatchSize)
	require.Equal(t, DefaultDuration, c.Duration)
	require.Equal(t, DefaultStreams(), c.Streams)
	require.Equal(t, DefaultInFlight, c.InFlight)
	require.Equal(t, DefaultUsers, c.Users)
	require.Equal(t, DefaultDrainTimeout, c.DrainTimeout)
	require.Equal(t, DefaultProgressInterval, c.ProgressInterval)
	require.NotZero(t, c.Seed)
	require.Len(t, c.RunID, 8)
	require.NoError(t, c.Validate(), "the defaults are valid")
}

func TestTenantKey_StringHidesSecret(t *testing.T) {
	t.Parallel()
	k := TenantKey{Tenant: "acme", Secret: "abk_topsecret"}
	require.Equal(t, "acme", k.String())
}
