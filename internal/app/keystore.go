package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/abacus-analytics/abacus/auth"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// keyStore adapts the PostgreSQL key lookup to what the authenticator consumes.
type keyStore struct{ db *postgres.DB }

var _ auth.KeyStore = keyStore{}

// storedScopes maps the scope names kept in api_keys.scopes to auth scopes.
var storedScopes = map[string]auth.Scope{
	"ingest": auth.ScopeIngest,
	"query":  auth.ScopeQuery,
}

func (s keyStore) LookupAPIKey(ctx context.Context, keyID string) (auth.KeyRecord, error) {
	rec, err := s.db.LookupAPIKey(ctx, keyID)
	if errors.Is(err, postgres.ErrNotFound) {
		return auth.KeyRecord{}, fmt.Errorf("lookup api key: %w", auth.ErrKeyNotFound)
	}
	if err != nil {
		return auth.KeyRecord{}, err
	}
	out := auth.KeyRecord{
		ID:           rec.ID,
		Tenant:       rec.Tenant,
		Hash:         rec.Hash,
		TenantActive: rec.TenantState == postgres.TenantActive,
	}
	for _, name := range rec.Scopes {
		if sc, ok := storedScopes[name]; ok {
			out.Scopes = append(out.Scopes, sc)
		}
	}
	if rec.RevokedAt != nil {
		out.RevokedAt = *rec.RevokedAt
	}
	if rec.ExpiresAt != nil {
		out.ExpiresAt = *rec.ExpiresAt
	}
	return out, nil
}
