package devstack_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/internal/devstack"
)

func TestRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     []devstack.Option
		wantKept bool // whether data survives a restart
	}{
		{name: "durable keeps data across restart", wantKept: true},
		{name: "ephemeral starts empty after restart", opts: []devstack.Option{devstack.Ephemeral()}, wantKept: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			r, err := devstack.StartRedis(ctx, t.TempDir(), testLogger(t), tt.opts...)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, r.Stop()) })
			addr := r.Addr()
			require.Equal(t, "redis://"+addr+"/0", r.URL())

			// A high database index: tests take one each.
			opts, err := redis.ParseURL("redis://" + addr + "/9999")
			require.NoError(t, err)
			c := redis.NewClient(opts)
			require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
			got, err := c.Get(ctx, "k").Result()
			require.NoError(t, err)
			require.Equal(t, "v", got)
			require.NoError(t, c.Close())

			require.NoError(t, r.Restart(ctx))
			require.Equal(t, addr, r.Addr())

			c = redis.NewClient(opts)
			t.Cleanup(func() { _ = c.Close() })
			got, err = c.Get(ctx, "k").Result()
			if tt.wantKept {
				require.NoError(t, err)
				require.Equal(t, "v", got)
			} else {
				require.ErrorIs(t, err, redis.Nil)
			}
		})
	}
}
