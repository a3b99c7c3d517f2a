package admin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/auth"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
)

func createKey(t *testing.T, e env, tenant string, scopes ...adminv1.Scope) *adminv1.CreateApiKeyResponse {
	t.Helper()
	resp, err := e.svc.CreateApiKey(t.Context(), &adminv1.CreateApiKeyRequest{TenantId: tenant, Scopes: scopes})
	require.NoError(t, err)
	return resp
}

// storedHash reads a key's hash straight from the table.
func storedHash(t *testing.T, e env, keyID string) []byte {
	t.Helper()
	var hash []byte
	require.NoError(t, e.db.Pool().QueryRow(t.Context(),
		`SELECT secret_hash FROM api_keys WHERE key_id = $1`, keyID).Scan(&hash))
	return hash
}

func TestCreateApiKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	expire := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond)

	tests := []struct {
		name       string
		scopes     []adminv1.Scope
		expire     *timestamppb.Timestamp
		wantScopes []adminv1.Scope
	}{
		{
			name:       "ingest",
			scopes:     []adminv1.Scope{adminv1.Scope_SCOPE_INGEST},
			wantScopes: []adminv1.Scope{adminv1.Scope_SCOPE_INGEST},
		},
		{
			name:       "both, expiring",
			scopes:     []adminv1.Scope{adminv1.Scope_SCOPE_QUERY, adminv1.Scope_SCOPE_INGEST},
			expire:     timestamppb.New(expire),
			wantScopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY, adminv1.Scope_SCOPE_INGEST},
		},
		{
			name:       "duplicates collapse",
			scopes:     []adminv1.Scope{adminv1.Scope_SCOPE_QUERY, adminv1.Scope_SCOPE_QUERY},
			wantScopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := e.svc.CreateApiKey(t.Context(), &adminv1.CreateApiKeyRequest{
				TenantId:    "acme",
				Scopes:      tt.scopes,
				DisplayName: tt.name,
				ExpireTime:  tt.expire,
			})
			require.NoError(t, err)
			key := resp.GetApiKey()

			id, err := auth.ParseKey(resp.GetSecret())
			require.NoError(t, err, "the secret is a well-formed key")
			require.Equal(t, key.GetKeyId(), id, "the secret embeds the returned key_id")
			require.Equal(t, "acme", key.GetTenantId())
			require.Equal(t, tt.name, key.GetDisplayName())
			require.Equal(t, tt.wantScopes, key.GetScopes())
			require.NotZero(t, key.GetCreateTime().AsTime())
			require.Nil(t, key.GetRevokeTime())
			if tt.expire != nil {
				require.Equal(t, expire, key.GetExpireTime().AsTime())
			} else {
				require.Nil(t, key.GetExpireTime())
			}

			hash := storedHash(t, e, key.GetKeyId())
			require.Equal(t, auth.HashSecret(resp.GetSecret()), hash, "only the hash is stored")
			require.NotContains(t, string(hash), resp.GetSecret())

			logs := e.logs.String()
			require.Contains(t, logs, `"msg":"api key created"`)
			require.Contains(t, logs, `"key_id":"`+key.GetKeyId()+`"`)
			require.NotContains(t, logs, resp.GetSecret(), "the secret is never logged")
		})
	}
}

func TestCreateApiKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")

	tests := []struct {
		name      string
		req       *adminv1.CreateApiKeyRequest
		wantField string
		wantErr   error
	}{
		{
			name:    "unknown tenant",
			req:     &adminv1.CreateApiKeyRequest{TenantId: "nobody", Scopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY}},
			wantErr: postgres.ErrNotFound,
		},
		{
			name:      "no scopes",
			req:       &adminv1.CreateApiKeyRequest{TenantId: "acme"},
			wantField: "scopes",
		},
		{
			name:      "unspecified scope",
			req:       &adminv1.CreateApiKeyRequest{TenantId: "acme", Scopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY, adminv1.Scope_SCOPE_UNSPECIFIED}},
			wantField: "scopes[1]",
		},
		{
			name:      "undefined scope",
			req:       &adminv1.CreateApiKeyRequest{TenantId: "acme", Scopes: []adminv1.Scope{7}},
			wantField: "scopes[0]",
		},
		{
			name: "invalid expire time",
			req: &adminv1.CreateApiKeyRequest{TenantId: "acme", Scopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY},
				ExpireTime: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}},
			wantField: "expire_time",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.svc.CreateApiKey(t.Context(), tt.req)
			if tt.wantField != "" {
				requireInvalidArgument(t, err, tt.wantField)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}

	list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme"})
	require.NoError(t, err)
	require.Empty(t, list.GetApiKeys(), "no refused request created a key")
}

func TestListApiKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	createTenant(t, e, "globex", "")
	createTenant(t, e, "keyless", "")

	var (
		secrets []string
		want    []string
	)
	for range 3 {
		resp := createKey(t, e, "acme", adminv1.Scope_SCOPE_INGEST)
		secrets = append(secrets, resp.GetSecret())
		want = append(want, resp.GetApiKey().GetKeyId())
	}
	other := createKey(t, e, "globex", adminv1.Scope_SCOPE_QUERY)
	secrets = append(secrets, other.GetSecret())

	var (
		got   []string
		token string
		pages int
	)
	for range 4 {
		resp, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		pages++
		for _, k := range resp.GetApiKeys() {
			require.Equal(t, "acme", k.GetTenantId())
			got = append(got, k.GetKeyId())
		}
		// Whatever the message holds, no secret is in it, in any encoding
		// the API offers.
		js, err := protojson.Marshal(resp)
		require.NoError(t, err)
		for _, s := range secrets {
			require.NotContains(t, resp.String(), s)
			require.NotContains(t, string(js), s)
		}
		require.NotContains(t, string(js), "hash")
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
	}
	require.Equal(t, want, got, "oldest first, every key once, only the tenant's own")
	require.Equal(t, 2, pages)

	empty, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "keyless"})
	require.NoError(t, err)
	require.Empty(t, empty.GetApiKeys())
	require.Empty(t, empty.GetNextPageToken())

	_, err = e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "nobody"})
	require.ErrorIs(t, err, postgres.ErrNotFound)

	for _, bad := range []string{"!!!", "c2hvcnQ", strings.Repeat("A", 40)} {
		_, err = e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme", PageToken: bad})
		requireInvalidArgument(t, err, "page_token")
	}
}

func TestRevokeApiKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	createTenant(t, e, "globex", "")

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{name: "revoke is idempotent", run: func(t *testing.T) {
			key := createKey(t, e, "acme", adminv1.Scope_SCOPE_INGEST).GetApiKey()

			first, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
			require.NoError(t, err)
			require.NotNil(t, first.GetApiKey().GetRevokeTime())
			require.Equal(t, key.GetKeyId(), first.GetApiKey().GetKeyId())

			second, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
			require.NoError(t, err)
			require.Equal(t, first.GetApiKey().GetRevokeTime().AsTime(), second.GetApiKey().GetRevokeTime().AsTime(),
				"a second revocation keeps the first revoke_time")

			logs := e.logs.String()
			require.Contains(t, logs, `"msg":"api key revoked"`)
			require.Contains(t, logs, `"key_id":"`+key.GetKeyId()+`"`)
		}},
		{name: "another tenant's key is not found", run: func(t *testing.T) {
			key := createKey(t, e, "globex", adminv1.Scope_SCOPE_QUERY).GetApiKey()

			_, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
			require.ErrorIs(t, err, postgres.ErrNotFound)

			list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "globex"})
			require.NoError(t, err)
			var found bool
			for _, k := range list.GetApiKeys() {
				if k.GetKeyId() == key.GetKeyId() {
					found = true
					require.Nil(t, k.GetRevokeTime(), "the owner's key stays valid")
				}
			}
			require.True(t, found)
		}},
		{name: "unknown key is not found", run: func(t *testing.T) {
			_, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: "0123456789abcdef"})
			require.ErrorIs(t, err, postgres.ErrNotFound)
		}},
		{name: "unknown tenant is not found", run: func(t *testing.T) {
			key := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
			_, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "nobody", KeyId: key.GetKeyId()})
			require.ErrorIs(t, err, postgres.ErrNotFound)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t)
		})
	}
}
