package admin_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/abacus-analytics/abacus/auth"
	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// dbNow is the database's clock, which expiry arithmetic uses.
func dbNow(t *testing.T, e env) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, e.db.Pool().QueryRow(t.Context(), `SELECT now()`).Scan(&now))
	return now.UTC()
}

func TestRotateApiKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	createTenant(t, e, "globex", "")

	tests := []struct {
		name      string
		grace     *durationpb.Duration
		wantGrace time.Duration
	}{
		{name: "default grace is 24 hours", wantGrace: 24 * time.Hour},
		{name: "explicit grace", grace: durationpb.New(90 * time.Minute), wantGrace: 90 * time.Minute},
		{name: "longest grace", grace: durationpb.New(30 * 24 * time.Hour), wantGrace: 30 * 24 * time.Hour},
		{name: "grace 0 ends the old key at once", grace: durationpb.New(0), wantGrace: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			created, err := e.svc.CreateApiKey(t.Context(), &adminv1.CreateApiKeyRequest{
				TenantId: "acme", DisplayName: "ci", Scopes: []adminv1.Scope{adminv1.Scope_SCOPE_QUERY, adminv1.Scope_SCOPE_INGEST},
			})
			require.NoError(t, err)
			old := created.GetApiKey()

			before := dbNow(t, e)
			resp, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{
				TenantId: "acme", KeyId: old.GetKeyId(), GracePeriod: tt.grace,
			})
			require.NoError(t, err)
			after := dbNow(t, e)

			key := resp.GetApiKey()
			id, err := auth.ParseKey(resp.GetSecret())
			require.NoError(t, err, "the new secret is a well-formed key")
			require.Equal(t, key.GetKeyId(), id)
			require.NotEqual(t, old.GetKeyId(), key.GetKeyId())
			require.NotEqual(t, created.GetSecret(), resp.GetSecret())
			require.Equal(t, auth.HashSecret(resp.GetSecret()), storedHash(t, e, key.GetKeyId()), "only the hash is stored")
			require.Equal(t, "acme", key.GetTenantId())
			require.Equal(t, old.GetScopes(), key.GetScopes())
			require.Equal(t, "ci", key.GetDisplayName())
			require.Nil(t, key.GetExpireTime())
			require.Nil(t, key.GetRevokeTime())

			prev := resp.GetPreviousApiKey()
			require.Equal(t, old.GetKeyId(), prev.GetKeyId())
			require.Nil(t, prev.GetRevokeTime())
			expire := prev.GetExpireTime().AsTime()
			require.False(t, expire.Before(before.Add(tt.wantGrace)), "expires at %v, grace %v from %v", expire, tt.wantGrace, before)
			require.False(t, expire.After(after.Add(tt.wantGrace)))

			// The listing agrees with the response.
			list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme", PageSize: 1000})
			require.NoError(t, err)
			found := 0
			for _, k := range list.GetApiKeys() {
				switch k.GetKeyId() {
				case old.GetKeyId():
					found++
					require.Equal(t, prev.GetExpireTime().AsTime(), k.GetExpireTime().AsTime())
				case key.GetKeyId():
					found++
				}
			}
			require.Equal(t, 2, found)

			logs := e.logs.String()
			require.Contains(t, logs, `"msg":"api key rotated"`)
			require.Contains(t, logs, `"previous_key_id":"`+old.GetKeyId()+`"`)
			require.NotContains(t, logs, resp.GetSecret(), "the secret is never logged")
		})
	}
}

func TestRotateApiKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	createTenant(t, e, "globex", "")

	t.Run("another tenant's key is not found", func(t *testing.T) {
		t.Parallel()
		key := createKey(t, e, "globex", adminv1.Scope_SCOPE_QUERY).GetApiKey()
		_, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
		require.ErrorIs(t, err, postgres.ErrNotFound)
		list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "globex"})
		require.NoError(t, err)
		require.Len(t, list.GetApiKeys(), 1, "no successor appeared")
		require.Nil(t, list.GetApiKeys()[0].GetExpireTime(), "the owner's key is untouched")
	})

	t.Run("unknown key and tenant are not found", func(t *testing.T) {
		t.Parallel()
		_, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: "0123456789abcdef"})
		require.ErrorIs(t, err, postgres.ErrNotFound)
		key := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
		_, err = e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "nobody", KeyId: key.GetKeyId()})
		require.ErrorIs(t, err, postgres.ErrNotFound)
	})

	t.Run("revoked key is a failed precondition", func(t *testing.T) {
		t.Parallel()
		key := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
		_, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
		require.NoError(t, err)
		_, err = e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition)
	})

	t.Run("a rotated key is not rotated again", func(t *testing.T) {
		t.Parallel()
		key := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
		_, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
		require.NoError(t, err)
		_, err = e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId()})
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition)
	})

	t.Run("grace period out of bounds", func(t *testing.T) {
		t.Parallel()
		key := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
		for _, grace := range []*durationpb.Duration{
			durationpb.New(-time.Second),
			durationpb.New(30*24*time.Hour + time.Nanosecond),
			{Seconds: 1, Nanos: -1},
			{Seconds: 315576000000},
		} {
			_, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: key.GetKeyId(), GracePeriod: grace})
			requireInvalidArgument(t, err, "grace_period")
		}
		list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme", PageSize: 1000})
		require.NoError(t, err)
		for _, k := range list.GetApiKeys() {
			if k.GetKeyId() == key.GetKeyId() {
				require.Nil(t, k.GetExpireTime(), "refused rotations changed nothing")
			}
		}
	})

	t.Run("invalid tenant ID", func(t *testing.T) {
		t.Parallel()
		_, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "Not Valid", KeyId: "0123456789abcdef"})
		requireInvalidArgument(t, err, "tenant_id")
	})
}

func TestApiKeyLastUsedTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	createTenant(t, e, "acme", "")
	used := createKey(t, e, "acme", adminv1.Scope_SCOPE_INGEST).GetApiKey()
	unused := createKey(t, e, "acme", adminv1.Scope_SCOPE_QUERY).GetApiKey()
	require.Nil(t, used.GetLastUsedTime())

	at := time.Date(2026, 5, 4, 3, 2, 41, 500, time.UTC)
	require.NoError(t, e.db.TouchAPIKeys(t.Context(), map[string]time.Time{used.GetKeyId(): at}))

	list, err := e.svc.ListApiKeys(t.Context(), &adminv1.ListApiKeysRequest{TenantId: "acme"})
	require.NoError(t, err)
	require.Len(t, list.GetApiKeys(), 2)
	for _, k := range list.GetApiKeys() {
		switch k.GetKeyId() {
		case used.GetKeyId():
			require.Equal(t, timestamppb.New(time.Date(2026, 5, 4, 3, 2, 0, 0, time.UTC)).AsTime(), k.GetLastUsedTime().AsTime(),
				"reported to the minute")
		case unused.GetKeyId():
			require.Nil(t, k.GetLastUsedTime())
		}
	}

	// Rotation and revocation answers carry it too.
	rot, err := e.svc.RotateApiKey(t.Context(), &adminv1.RotateApiKeyRequest{TenantId: "acme", KeyId: used.GetKeyId()})
	require.NoError(t, err)
	require.NotNil(t, rot.GetPreviousApiKey().GetLastUsedTime())
	require.Nil(t, rot.GetApiKey().GetLastUsedTime(), "the successor has not been used")
	rev, err := e.svc.RevokeApiKey(t.Context(), &adminv1.RevokeApiKeyRequest{TenantId: "acme", KeyId: used.GetKeyId()})
	require.NoError(t, err)
	require.NotNil(t, rev.GetApiKey().GetLastUsedTime())
}
