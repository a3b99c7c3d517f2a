package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, id := range []tenancy.ID{"acme", "globex"} {
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id, DisplayName: string(id)})
		require.NoError(t, err)
	}
	expires := minute.Add(24 * time.Hour)

	key, err := db.CreateAPIKey(t.Context(), "acme", postgres.APIKey{
		ID: "key-1", Hash: []byte("hash-1"), Scopes: []string{"SCOPE_INGEST", "SCOPE_QUERY"},
		DisplayName: "ci", ExpiresAt: &expires,
	})
	require.NoError(t, err)
	require.Equal(t, "key-1", key.ID)
	require.Equal(t, tenancy.ID("acme"), key.Tenant)
	require.Equal(t, []byte("hash-1"), key.Hash)
	require.Equal(t, []string{"SCOPE_INGEST", "SCOPE_QUERY"}, key.Scopes)
	require.Equal(t, "ci", key.DisplayName)
	require.False(t, key.CreatedAt.IsZero())
	require.Equal(t, expires, *key.ExpiresAt)
	require.Nil(t, key.RevokedAt)
	require.Nil(t, key.LastUsedAt)

	t.Run("create errors", func(t *testing.T) {
		tests := []struct {
			name    string
			tenant  tenancy.ID
			key     postgres.APIKey
			wantErr error
		}{
			{"duplicate ID", "acme", postgres.APIKey{ID: "key-1", Hash: []byte("h")}, postgres.ErrAlreadyExists},
			{"duplicate ID of another tenant", "globex", postgres.APIKey{ID: "key-1", Hash: []byte("h")}, postgres.ErrAlreadyExists},
			{"missing tenant", "nobody", postgres.APIKey{ID: "key-x", Hash: []byte("h")}, postgres.ErrNotFound},
			{"no hash", "acme", postgres.APIKey{ID: "key-x"}, postgres.ErrInvalidArgument},
			{"no ID", "acme", postgres.APIKey{Hash: []byte("h")}, postgres.ErrInvalidArgument},
			{"tenant mismatch", "acme", postgres.APIKey{ID: "key-x", Tenant: "globex", Hash: []byte("h")}, postgres.ErrInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := db.CreateAPIKey(t.Context(), tt.tenant, tt.key)
				require.ErrorIs(t, err, tt.wantErr)
			})
		}
	})

	t.Run("lookup", func(t *testing.T) {
		rec, err := db.LookupAPIKey(t.Context(), "key-1")
		require.NoError(t, err)
		require.Equal(t, postgres.KeyRecord{
			ID: "key-1", Tenant: "acme", Hash: []byte("hash-1"),
			Scopes: []string{"SCOPE_INGEST", "SCOPE_QUERY"}, ExpiresAt: &expires,
			TenantState: postgres.TenantActive,
		}, rec)

		for _, id := range []string{"nope", "", "nul\x00byte", "bad\xffutf8"} {
			_, err = db.LookupAPIKey(t.Context(), id)
			require.ErrorIs(t, err, postgres.ErrNotFound, "%q", id)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		_, err := db.RevokeAPIKey(t.Context(), "globex", "key-1")
		require.ErrorIs(t, err, postgres.ErrNotFound, "a tenant cannot revoke another tenant's key")
		rec, err := db.LookupAPIKey(t.Context(), "key-1")
		require.NoError(t, err)
		require.Nil(t, rec.RevokedAt, "the failed cross-tenant revoke changed nothing")

		for _, id := range []string{"nope", "nul\x00byte"} {
			_, err = db.RevokeAPIKey(t.Context(), "acme", id)
			require.ErrorIs(t, err, postgres.ErrNotFound, "%q", id)
		}

		first, err := db.RevokeAPIKey(t.Context(), "acme", "key-1")
		require.NoError(t, err)
		require.NotNil(t, first.RevokedAt)
		require.Nil(t, first.Hash)
		second, err := db.RevokeAPIKey(t.Context(), "acme", "key-1")
		require.NoError(t, err, "revoking twice succeeds")
		require.Equal(t, *first.RevokedAt, *second.RevokedAt, "and keeps the first revocation time")

		rec, err = db.LookupAPIKey(t.Context(), "key-1")
		require.NoError(t, err)
		require.Equal(t, *first.RevokedAt, *rec.RevokedAt)
	})

	t.Run("lookup reports tenant state", func(t *testing.T) {
		_, err := db.CreateAPIKey(t.Context(), "globex", postgres.APIKey{ID: "key-g", Hash: []byte("g")})
		require.NoError(t, err)
		_, err = db.UpdateTenant(t.Context(), "globex", postgres.TenantUpdate{State: ptr(postgres.TenantSuspended)})
		require.NoError(t, err)
		rec, err := db.LookupAPIKey(t.Context(), "key-g")
		require.NoError(t, err)
		require.Equal(t, tenancy.ID("globex"), rec.Tenant)
		require.Equal(t, postgres.TenantSuspended, rec.TenantState)
		require.Empty(t, rec.Scopes)
		require.NotNil(t, rec.Scopes, "nil scopes are stored as an empty array")
	})
}

func TestListAPIKeysPagination(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, id := range []tenancy.ID{"acme", "globex"} {
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id})
		require.NoError(t, err)
	}
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("acme-key-%d", i)
		_, err := db.CreateAPIKey(t.Context(), "acme", postgres.APIKey{ID: id, Hash: []byte{byte(i)}})
		require.NoError(t, err)
		want = append(want, id)
	}
	_, err := db.CreateAPIKey(t.Context(), "globex", postgres.APIKey{ID: "globex-key", Hash: []byte("g")})
	require.NoError(t, err)

	tests := []struct {
		name     string
		tenant   tenancy.ID
		pageSize int
		want     []string
		pages    int
	}{
		{"pages of two", "acme", 2, want, 3},
		{"one page", "acme", 10, want, 1},
		{"other tenant sees only its key", "globex", 2, []string{"globex-key"}, 1},
		{"tenant without keys", "initech", 2, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			pages := 0
			after := ""
			for {
				page, err := db.ListAPIKeys(t.Context(), tt.tenant, tt.pageSize, after)
				require.NoError(t, err)
				pages++
				for _, k := range page {
					require.Equal(t, tt.tenant, k.Tenant)
					require.Nil(t, k.Hash, "listing never returns hashes")
					got = append(got, k.ID)
				}
				if len(page) < tt.pageSize {
					break
				}
				after = page[len(page)-1].ID
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.pages, pages)
		})
	}

	t.Run("cursor of another tenant yields nothing", func(t *testing.T) {
		t.Parallel()
		page, err := db.ListAPIKeys(t.Context(), "globex", 10, "acme-key-0")
		require.NoError(t, err)
		require.Empty(t, page)
	})
}
