package postgres_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

func TestTenantCRUD(t *testing.T) {
	t.Parallel()
	db := newDB(t)

	created, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "acme", DisplayName: "Acme"})
	require.NoError(t, err)
	require.Equal(t, tenancy.ID("acme"), created.ID)
	require.Equal(t, "Acme", created.DisplayName)
	require.Equal(t, postgres.TenantActive, created.State)
	require.False(t, created.CreatedAt.IsZero())
	require.Equal(t, created.CreatedAt, created.UpdatedAt)

	got, err := db.GetTenant(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, created, got)

	createTests := []struct {
		name    string
		tenant  postgres.Tenant
		wantErr error
	}{
		{"duplicate", postgres.Tenant{ID: "acme", DisplayName: "Again"}, postgres.ErrAlreadyExists},
		{"invalid ID", postgres.Tenant{ID: "Not An ID"}, postgres.ErrInvalidArgument},
		{"empty ID", postgres.Tenant{}, postgres.ErrInvalidArgument},
		{"unknown state", postgres.Tenant{ID: "initech", State: "deleted"}, postgres.ErrInvalidArgument},
	}
	for _, tt := range createTests {
		t.Run("create/"+tt.name, func(t *testing.T) {
			_, err := db.CreateTenant(t.Context(), tt.tenant)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}

	_, err = db.GetTenant(t.Context(), "nobody")
	require.ErrorIs(t, err, postgres.ErrNotFound)
	require.ErrorContains(t, err, `get tenant "nobody"`)

	suspended, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: "globex", State: postgres.TenantSuspended})
	require.NoError(t, err)
	require.Equal(t, postgres.TenantSuspended, suspended.State)

	updateTests := []struct {
		name     string
		id       tenancy.ID
		update   postgres.TenantUpdate
		wantName string
		wantSt   string
		wantErr  error
	}{
		{"rename", "acme", postgres.TenantUpdate{DisplayName: ptr("Acme Corp")}, "Acme Corp", postgres.TenantActive, nil},
		{"suspend", "acme", postgres.TenantUpdate{State: ptr(postgres.TenantSuspended)}, "Acme Corp", postgres.TenantSuspended, nil},
		{"both", "acme", postgres.TenantUpdate{DisplayName: ptr("ACME"), State: ptr(postgres.TenantActive)}, "ACME", postgres.TenantActive, nil},
		{"nothing", "acme", postgres.TenantUpdate{}, "ACME", postgres.TenantActive, nil},
		{"bad state", "acme", postgres.TenantUpdate{State: ptr("gone")}, "", "", postgres.ErrInvalidArgument},
		{"NUL in name", "acme", postgres.TenantUpdate{DisplayName: ptr("a\x00b")}, "", "", postgres.ErrInvalidArgument},
		{"missing tenant", "nobody", postgres.TenantUpdate{DisplayName: ptr("x")}, "", "", postgres.ErrNotFound},
	}
	for _, tt := range updateTests {
		// Sequential: each case builds on the previous one's result.
		t.Run("update/"+tt.name, func(t *testing.T) {
			got, err := db.UpdateTenant(t.Context(), tt.id, tt.update)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantName, got.DisplayName)
			require.Equal(t, tt.wantSt, got.State)
			require.Equal(t, created.CreatedAt, got.CreatedAt)
			require.False(t, got.UpdatedAt.Before(got.CreatedAt))
		})
	}
}

func TestListTenantsPagination(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var want []tenancy.ID
	for i := range 7 {
		id := tenancy.ID(fmt.Sprintf("tenant-%02d", 6-i)) // created out of order
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id, DisplayName: string(id)})
		require.NoError(t, err)
		want = append([]tenancy.ID{id}, want...)
	}

	tests := []struct {
		name      string
		pageSize  int
		wantPages []int
	}{
		{"page of three", 3, []int{3, 3, 1}},
		{"page of seven ends with an empty page", 7, []int{7, 0}},
		{"default page size", 0, []int{7}},
		{"clamped page size", postgres.MaxPageSize + 1, []int{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			limit := min(tt.pageSize, postgres.MaxPageSize)
			if limit == 0 {
				limit = postgres.DefaultPageSize
			}
			var got []tenancy.ID
			var sizes []int
			after := ""
			for {
				page, err := db.ListTenants(t.Context(), tt.pageSize, after)
				require.NoError(t, err)
				sizes = append(sizes, len(page))
				for _, tn := range page {
					got = append(got, tn.ID)
				}
				if len(page) < limit {
					break
				}
				after = string(page[len(page)-1].ID)
			}
			require.Equal(t, want, got)
			require.Equal(t, tt.wantPages, sizes)
		})
	}

	_, err := db.ListTenants(t.Context(), -1, "")
	require.ErrorIs(t, err, postgres.ErrInvalidArgument)
}
