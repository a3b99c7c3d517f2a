package admin_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
)

func createTenant(t *testing.T, e env, id, name string) *adminv1.Tenant {
	t.Helper()
	resp, err := e.svc.CreateTenant(t.Context(), &adminv1.CreateTenantRequest{TenantId: id, DisplayName: name})
	require.NoError(t, err)
	return resp.GetTenant()
}

func TestCreateAndGetTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	created := createTenant(t, e, "acme", "Acme Corp")
	require.Equal(t, "acme", created.GetTenantId())
	require.Equal(t, "Acme Corp", created.GetDisplayName())
	require.Equal(t, adminv1.TenantState_TENANT_STATE_ACTIVE, created.GetState())
	require.NotZero(t, created.GetCreateTime().AsTime())
	require.NotZero(t, created.GetUpdateTime().AsTime())

	got, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: "acme"})
	require.NoError(t, err)
	require.Equal(t, created.String(), got.GetTenant().String())

	_, err = e.svc.CreateTenant(t.Context(), &adminv1.CreateTenantRequest{TenantId: "acme", DisplayName: "again"})
	require.ErrorIs(t, err, postgres.ErrAlreadyExists)

	_, err = e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: "nobody"})
	require.ErrorIs(t, err, postgres.ErrNotFound)

	require.Contains(t, e.logs.String(), `"msg":"tenant created"`)
}

func TestTenantIDIsChecked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// The validation interceptor refuses these first; the handlers must not
	// depend on it.
	for _, id := range []string{"", "ab", "Acme", "acme-", "1acme", "acme/../x"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			t.Parallel()
			_, err := e.svc.CreateTenant(t.Context(), &adminv1.CreateTenantRequest{TenantId: id})
			requireInvalidArgument(t, err, "tenant_id")
			_, err = e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
			requireInvalidArgument(t, err, "tenant_id")
			_, err = e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: id})
			requireInvalidArgument(t, err, "tenant_id")
			_, err = e.svc.UpdateTenant(t.Context(), &adminv1.UpdateTenantRequest{
				Tenant:     &adminv1.Tenant{TenantId: id},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
			})
			requireInvalidArgument(t, err, "tenant.tenant_id")
		})
	}
}

func TestListTenantsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// Created out of order; listed by tenant_id.
	ids := []string{"tenant-e", "tenant-a", "tenant-c", "tenant-b", "tenant-d"}
	for _, id := range ids {
		createTenant(t, e, id, "")
	}

	tests := []struct {
		name     string
		pageSize int32
		want     [][]string
	}{
		{name: "three pages", pageSize: 2, want: [][]string{
			{"tenant-a", "tenant-b"}, {"tenant-c", "tenant-d"}, {"tenant-e"},
		}},
		{name: "page size equal to the total is one page", pageSize: 5, want: [][]string{
			{"tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"},
		}},
		{name: "last page full", pageSize: 1, want: [][]string{
			{"tenant-a"}, {"tenant-b"}, {"tenant-c"}, {"tenant-d"}, {"tenant-e"},
		}},
		{name: "zero means the default", pageSize: 0, want: [][]string{
			{"tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"},
		}},
		{name: "over the maximum is clamped", pageSize: 5000, want: [][]string{
			{"tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"},
		}},
		{name: "negative means the default", pageSize: -3, want: [][]string{
			{"tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				got   [][]string
				token string
			)
			for range len(tt.want) + 1 { // bounded: a paging bug must not loop forever
				resp, err := e.svc.ListTenants(t.Context(), &adminv1.ListTenantsRequest{PageSize: tt.pageSize, PageToken: token})
				require.NoError(t, err)
				var page []string
				for _, tn := range resp.GetTenants() {
					page = append(page, tn.GetTenantId())
				}
				got = append(got, page)
				token = resp.GetNextPageToken()
				if token == "" {
					break
				}
			}
			require.Equal(t, tt.want, got)
			require.Empty(t, token, "the last page has no next_page_token")
		})
	}
}

func TestListTenantsBadPageToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	for _, token := range []string{
		"!!!",                   // not base64url
		"dGVuYW50LWE=",          // padded: tokens are unpadded
		"QUNNRQ",                // "ACME": not a tenant ID
		"_w",                    // "\xff": not UTF-8
		"dGVuYW50LWE/dGVuYW50L", // standard (not URL) alphabet
	} {
		t.Run(token, func(t *testing.T) {
			t.Parallel()
			_, err := e.svc.ListTenants(t.Context(), &adminv1.ListTenantsRequest{PageToken: token})
			requireInvalidArgument(t, err, "page_token")
		})
	}
}

func TestUpdateTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	tests := []struct {
		name      string
		tenant    *adminv1.Tenant // TenantId defaults to the test's tenant
		paths     []string
		nilMask   bool
		wantName  string
		wantState adminv1.TenantState
		wantField string // INVALID_ARGUMENT naming this field
		wantErr   error
	}{
		{
			name:      "display name only",
			tenant:    &adminv1.Tenant{DisplayName: "Renamed", State: adminv1.TenantState_TENANT_STATE_SUSPENDED},
			paths:     []string{"display_name"},
			wantName:  "Renamed",
			wantState: adminv1.TenantState_TENANT_STATE_ACTIVE,
		},
		{
			name:      "state only",
			tenant:    &adminv1.Tenant{DisplayName: "ignored", State: adminv1.TenantState_TENANT_STATE_SUSPENDED},
			paths:     []string{"state"},
			wantName:  "Original",
			wantState: adminv1.TenantState_TENANT_STATE_SUSPENDED,
		},
		{
			name:      "both, display name cleared",
			tenant:    &adminv1.Tenant{DisplayName: "", State: adminv1.TenantState_TENANT_STATE_SUSPENDED},
			paths:     []string{"state", "display_name"},
			wantName:  "",
			wantState: adminv1.TenantState_TENANT_STATE_SUSPENDED,
		},
		{
			name:      "empty mask",
			tenant:    &adminv1.Tenant{DisplayName: "x"},
			paths:     []string{},
			wantField: "update_mask",
		},
		{
			name:      "no mask",
			tenant:    &adminv1.Tenant{DisplayName: "x"},
			nilMask:   true,
			wantField: "update_mask",
		},
		{
			name:      "unknown path",
			tenant:    &adminv1.Tenant{DisplayName: "x"},
			paths:     []string{"display_name", "create_time"},
			wantField: "update_mask",
		},
		{
			name:      "tenant_id is not updatable",
			tenant:    &adminv1.Tenant{DisplayName: "x"},
			paths:     []string{"tenant_id"},
			wantField: "update_mask",
		},
		{
			name:      "unspecified state",
			tenant:    &adminv1.Tenant{},
			paths:     []string{"state"},
			wantField: "tenant.state",
		},
		{
			name:      "undefined state",
			tenant:    &adminv1.Tenant{State: adminv1.TenantState(42)},
			paths:     []string{"state"},
			wantField: "tenant.state",
		},
		{
			name:      "no tenant",
			paths:     []string{"display_name"},
			wantField: "tenant",
		},
		{
			name:    "unknown tenant",
			tenant:  &adminv1.Tenant{TenantId: "nobody", DisplayName: "x"},
			paths:   []string{"display_name"},
			wantErr: postgres.ErrNotFound,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("tenant-%d", i)
			before := createTenant(t, e, id, "Original")
			req := &adminv1.UpdateTenantRequest{Tenant: tt.tenant}
			if req.Tenant != nil && req.Tenant.TenantId == "" {
				req.Tenant.TenantId = id
			}
			if !tt.nilMask {
				req.UpdateMask = &fieldmaskpb.FieldMask{Paths: tt.paths}
			}

			resp, err := e.svc.UpdateTenant(t.Context(), req)
			switch {
			case tt.wantField != "":
				requireInvalidArgument(t, err, tt.wantField)
				if tt.wantField == "update_mask" {
					require.ErrorContains(t, err, "display_name, state", "the error lists the allowed paths")
				}
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			default:
				require.NoError(t, err)
				require.Equal(t, id, resp.GetTenant().GetTenantId())
				require.Equal(t, tt.wantName, resp.GetTenant().GetDisplayName())
				require.Equal(t, tt.wantState, resp.GetTenant().GetState())
				require.Equal(t, before.GetCreateTime().AsTime(), resp.GetTenant().GetCreateTime().AsTime())
			}

			got, err := e.svc.GetTenant(t.Context(), &adminv1.GetTenantRequest{TenantId: id})
			require.NoError(t, err)
			if tt.wantField != "" || tt.wantErr != nil {
				require.Equal(t, before.String(), got.GetTenant().String(), "a refused update changes nothing")
			} else {
				require.Equal(t, resp.GetTenant().String(), got.GetTenant().String())
			}
		})
	}
}
