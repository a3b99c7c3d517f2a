package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// dbNow is the database's clock, which RotateAPIKey's expiry arithmetic uses.
func dbNow(t *testing.T, db *postgres.DB) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, db.Pool().QueryRow(t.Context(), `SELECT now()`).Scan(&now))
	return now.UTC()
}

func TestRotateAPIKey(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, id := range []tenancy.ID{"acme", "globex"} {
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id})
		require.NoError(t, err)
	}
	newKey := func(id string) postgres.APIKey { return postgres.APIKey{ID: id, Hash: []byte("hash-" + id)} }
	create := func(t *testing.T, tenant tenancy.ID, id string, expires *time.Time) postgres.APIKey {
		t.Helper()
		k, err := db.CreateAPIKey(t.Context(), tenant, postgres.APIKey{
			ID: id, Hash: []byte("hash-" + id), Scopes: []string{"ingest", "query"}, DisplayName: "ci " + id, ExpiresAt: expires,
		})
		require.NoError(t, err)
		return k
	}

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		orig := create(t, "acme", "rot-ok", nil)
		before := dbNow(t, db)
		old, created, err := db.RotateAPIKey(t.Context(), "acme", "rot-ok", time.Hour, newKey("rot-ok-2"))
		require.NoError(t, err)
		after := dbNow(t, db)

		require.Equal(t, "rot-ok-2", created.ID)
		require.Equal(t, tenancy.ID("acme"), created.Tenant)
		require.Equal(t, orig.Scopes, created.Scopes)
		require.Equal(t, orig.DisplayName, created.DisplayName)
		require.Nil(t, created.ExpiresAt, "the old key never expired, nor does its successor")
		require.Equal(t, []byte("hash-rot-ok-2"), created.Hash)
		require.Empty(t, created.ReplacedBy)

		require.Equal(t, "rot-ok", old.ID)
		require.Equal(t, "rot-ok-2", old.ReplacedBy)
		require.Nil(t, old.RevokedAt)
		require.Nil(t, old.Hash)
		require.NotNil(t, old.ExpiresAt)
		require.False(t, old.ExpiresAt.Before(before.Add(time.Hour)))
		require.False(t, old.ExpiresAt.After(after.Add(time.Hour)))

		// Both keys authenticate; the stored rows match what was returned.
		rec, err := db.LookupAPIKey(t.Context(), "rot-ok-2")
		require.NoError(t, err)
		require.Equal(t, []byte("hash-rot-ok-2"), rec.Hash)
		require.Equal(t, []string{"ingest", "query"}, rec.Scopes)
		rec, err = db.LookupAPIKey(t.Context(), "rot-ok")
		require.NoError(t, err)
		require.Equal(t, *old.ExpiresAt, *rec.ExpiresAt)

		_, _, err = db.RotateAPIKey(t.Context(), "acme", "rot-ok", time.Hour, newKey("rot-ok-3"))
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition, "a key is rotated once")
		require.ErrorContains(t, err, `already rotated to "rot-ok-2"`)
		_, err = db.LookupAPIKey(t.Context(), "rot-ok-3")
		require.ErrorIs(t, err, postgres.ErrNotFound, "the refused rotation created nothing")

		// The successor can be rotated in turn.
		_, third, err := db.RotateAPIKey(t.Context(), "acme", "rot-ok-2", time.Hour, newKey("rot-ok-3"))
		require.NoError(t, err)
		require.Equal(t, orig.Scopes, third.Scopes)
	})

	t.Run("grace never extends an earlier expiry", func(t *testing.T) {
		t.Parallel()
		soon := dbNow(t, db).Add(10 * time.Minute).Truncate(time.Microsecond)
		create(t, "acme", "rot-soon", &soon)
		old, created, err := db.RotateAPIKey(t.Context(), "acme", "rot-soon", 24*time.Hour, newKey("rot-soon-2"))
		require.NoError(t, err)
		require.Equal(t, soon, *old.ExpiresAt)
		require.Equal(t, soon, *created.ExpiresAt, "the successor inherits the expiry")
	})

	t.Run("new key sets its own expiry", func(t *testing.T) {
		t.Parallel()
		soon := dbNow(t, db).Add(10 * time.Minute).Truncate(time.Microsecond)
		later := soon.Add(30 * 24 * time.Hour)
		create(t, "acme", "rot-exp", &soon)
		k := newKey("rot-exp-2")
		k.ExpiresAt = &later
		_, created, err := db.RotateAPIKey(t.Context(), "acme", "rot-exp", time.Hour, k)
		require.NoError(t, err)
		require.Equal(t, later, *created.ExpiresAt)
	})

	t.Run("grace 0 ends the old key at once", func(t *testing.T) {
		t.Parallel()
		create(t, "acme", "rot-zero", nil)
		old, _, err := db.RotateAPIKey(t.Context(), "acme", "rot-zero", 0, newKey("rot-zero-2"))
		require.NoError(t, err)
		require.NotNil(t, old.ExpiresAt)
		require.False(t, old.ExpiresAt.After(dbNow(t, db)), "expired by the time the call returns")

		_, _, err = db.RotateAPIKey(t.Context(), "acme", "rot-zero", time.Hour, newKey("rot-zero-3"))
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition)
	})

	t.Run("another tenant's key is not found", func(t *testing.T) {
		t.Parallel()
		create(t, "globex", "rot-other", nil)
		_, _, err := db.RotateAPIKey(t.Context(), "acme", "rot-other", time.Hour, newKey("rot-other-2"))
		require.ErrorIs(t, err, postgres.ErrNotFound)
		rec, err := db.LookupAPIKey(t.Context(), "rot-other")
		require.NoError(t, err)
		require.Nil(t, rec.ExpiresAt, "the owner's key is untouched")
		_, err = db.LookupAPIKey(t.Context(), "rot-other-2")
		require.ErrorIs(t, err, postgres.ErrNotFound)
	})

	t.Run("unknown key is not found", func(t *testing.T) {
		t.Parallel()
		for _, id := range []string{"nope", "nul\x00byte"} {
			_, _, err := db.RotateAPIKey(t.Context(), "acme", id, time.Hour, newKey("rot-unknown-2"))
			require.ErrorIs(t, err, postgres.ErrNotFound, "%q", id)
		}
	})

	t.Run("revoked key is a failed precondition", func(t *testing.T) {
		t.Parallel()
		create(t, "acme", "rot-revoked", nil)
		_, err := db.RevokeAPIKey(t.Context(), "acme", "rot-revoked")
		require.NoError(t, err)
		_, _, err = db.RotateAPIKey(t.Context(), "acme", "rot-revoked", time.Hour, newKey("rot-revoked-2"))
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition)
		require.ErrorContains(t, err, "revoked")
		_, err = db.LookupAPIKey(t.Context(), "rot-revoked-2")
		require.ErrorIs(t, err, postgres.ErrNotFound, "no successor was created")
	})

	t.Run("expired key is a failed precondition", func(t *testing.T) {
		t.Parallel()
		past := dbNow(t, db).Add(-time.Minute)
		create(t, "acme", "rot-expired", &past)
		_, _, err := db.RotateAPIKey(t.Context(), "acme", "rot-expired", time.Hour, newKey("rot-expired-2"))
		require.ErrorIs(t, err, postgres.ErrFailedPrecondition)
		require.ErrorContains(t, err, "expired")
	})

	t.Run("successor ID taken", func(t *testing.T) {
		t.Parallel()
		create(t, "acme", "rot-dup", nil)
		create(t, "globex", "rot-dup-taken", nil)
		_, _, err := db.RotateAPIKey(t.Context(), "acme", "rot-dup", time.Hour, newKey("rot-dup-taken"))
		require.ErrorIs(t, err, postgres.ErrAlreadyExists)
		rec, err := db.LookupAPIKey(t.Context(), "rot-dup")
		require.NoError(t, err)
		require.Nil(t, rec.ExpiresAt, "the failed rotation rolled back")
	})

	t.Run("invalid arguments", func(t *testing.T) {
		t.Parallel()
		create(t, "acme", "rot-args", nil)
		tests := []struct {
			name  string
			grace time.Duration
			key   postgres.APIKey
		}{
			{"negative grace", -time.Second, newKey("rot-args-2")},
			{"no ID", time.Hour, postgres.APIKey{Hash: []byte("h")}},
			{"no hash", time.Hour, postgres.APIKey{ID: "rot-args-2"}},
			{"other tenant", time.Hour, postgres.APIKey{ID: "rot-args-2", Hash: []byte("h"), Tenant: "globex"}},
			{"scopes given", time.Hour, postgres.APIKey{ID: "rot-args-2", Hash: []byte("h"), Scopes: []string{"query"}}},
			{"display name given", time.Hour, postgres.APIKey{ID: "rot-args-2", Hash: []byte("h"), DisplayName: "x"}},
		}
		for _, tt := range tests {
			_, _, err := db.RotateAPIKey(t.Context(), "acme", "rot-args", tt.grace, tt.key)
			require.ErrorIs(t, err, postgres.ErrInvalidArgument, tt.name)
		}
	})
}

func TestTouchAPIKeys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, id := range []tenancy.ID{"acme", "globex"} {
		_, err := db.CreateTenant(t.Context(), postgres.Tenant{ID: id})
		require.NoError(t, err)
	}
	for _, k := range []struct {
		tenant tenancy.ID
		id     string
	}{{"acme", "key-a"}, {"acme", "key-b"}, {"globex", "key-g"}} {
		_, err := db.CreateAPIKey(t.Context(), k.tenant, postgres.APIKey{ID: k.id, Hash: []byte(k.id)})
		require.NoError(t, err)
	}
	lastUsed := func(t *testing.T) map[string]*time.Time {
		t.Helper()
		out := map[string]*time.Time{}
		for _, tenant := range []tenancy.ID{"acme", "globex"} {
			keys, err := db.ListAPIKeys(t.Context(), tenant, 10, "")
			require.NoError(t, err)
			for _, k := range keys {
				out[k.ID] = k.LastUsedAt
			}
		}
		return out
	}
	t1, t2, t3 := minute, minute.Add(time.Minute), minute.Add(2*time.Minute)

	steps := []struct {
		name string
		used map[string]time.Time
		want map[string]*time.Time
	}{
		{"nothing", nil, map[string]*time.Time{"key-a": nil, "key-b": nil, "key-g": nil}},
		{"first use, across tenants, unknown IDs ignored",
			map[string]time.Time{"key-a": t2, "key-g": t1, "nope": t3, "nul\x00": t3, "": t3},
			map[string]*time.Time{"key-a": &t2, "key-b": nil, "key-g": &t1}},
		{"an older time never overwrites a newer one",
			map[string]time.Time{"key-a": t1, "key-b": t1},
			map[string]*time.Time{"key-a": &t2, "key-b": &t1, "key-g": &t1}},
		{"the same time is a no-op", map[string]time.Time{"key-a": t2},
			map[string]*time.Time{"key-a": &t2, "key-b": &t1, "key-g": &t1}},
		{"newer times move forward; zero times are ignored",
			map[string]time.Time{"key-a": t3, "key-g": t2, "key-b": {}},
			map[string]*time.Time{"key-a": &t3, "key-b": &t1, "key-g": &t2}},
	}
	for _, st := range steps {
		// Sequential: each step builds on the previous one.
		t.Run(st.name, func(t *testing.T) {
			require.NoError(t, db.TouchAPIKeys(t.Context(), st.used))
			require.Equal(t, st.want, lastUsed(t))
		})
	}

	t.Run("concurrent touches keep the newest", func(t *testing.T) {
		errs := make(chan error, 20)
		for i := range 20 {
			go func() {
				errs <- db.TouchAPIKeys(t.Context(), map[string]time.Time{
					"key-a": t3.Add(time.Duration(i) * time.Second),
					"key-b": t3.Add(time.Duration(19-i) * time.Second),
				})
			}()
		}
		for range 20 {
			require.NoError(t, <-errs)
		}
		got := lastUsed(t)
		require.Equal(t, t3.Add(19*time.Second), *got["key-a"])
		require.Equal(t, t3.Add(19*time.Second), *got["key-b"])
	})
}
