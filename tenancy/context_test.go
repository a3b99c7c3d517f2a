package tenancy_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

type otherKey struct{}

func TestContext(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		ctx     func(context.Context) context.Context
		want    tenancy.ID
		wantErr error
	}{
		{
			name:    "absent",
			ctx:     func(ctx context.Context) context.Context { return ctx },
			wantErr: tenancy.ErrNoTenant,
		},
		{
			name: "present",
			ctx:  func(ctx context.Context) context.Context { return tenancy.NewContext(ctx, "acme") },
			want: "acme",
		},
		{
			name: "innermost wins",
			ctx: func(ctx context.Context) context.Context {
				return tenancy.NewContext(tenancy.NewContext(ctx, "acme"), "globex")
			},
			want: "globex",
		},
		{
			name:    "empty ID is no tenant",
			ctx:     func(ctx context.Context) context.Context { return tenancy.NewContext(ctx, "") },
			wantErr: tenancy.ErrNoTenant,
		},
		{
			name: "a plain string value under another key is not a tenant",
			ctx: func(ctx context.Context) context.Context {
				return context.WithValue(ctx, otherKey{}, tenancy.ID("acme"))
			},
			wantErr: tenancy.ErrNoTenant,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tenancy.FromContext(tt.ctx(t.Context()))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
