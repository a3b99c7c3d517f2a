package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/abacus-analytics/abacus/tenancy"
)

var _ tenancy.OverridesSource = (*DB)(nil)

// maxLimitsJSON bounds the stored overrides document that decodeLimits
// accepts. Twelve numbers take a few hundred bytes; anything much larger was
// not written by this package.
const maxLimitsJSON = 16 << 10

// sqlLoadLimitOverrides reads every tenant that overrides at least one limit.
// Tenants without overrides keep the column default '{}' and are skipped.
const sqlLoadLimitOverrides = `
SELECT tenant_id, limits
FROM tenants
WHERE limits <> '{}'::jsonb`

// LoadLimitOverrides returns the limit overrides of every tenant that has any,
// in one query. It implements [tenancy.OverridesSource]. A row whose document
// cannot be decoded (it was not written by this package) is left out and
// logged, so one bad row does not stop every node from loading the others.
func (db *DB) LoadLimitOverrides(ctx context.Context) (map[tenancy.ID]tenancy.LimitOverrides, error) {
	const op = "postgres: load limit overrides"
	rows, err := db.pool.Query(ctx, sqlLoadLimitOverrides)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	out := make(map[tenancy.ID]tenancy.LimitOverrides)
	var (
		id  string
		doc []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &doc}, func() error {
		ov, err := decodeLimits(doc)
		if err != nil {
			db.logger.WarnContext(ctx, "skipping undecodable limit overrides",
				slog.String("tenant_id", id), slog.Any("error", err))
			return nil
		}
		if ov != (tenancy.LimitOverrides{}) {
			out[tenancy.ID(id)] = ov
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// encodeLimits returns the stored form of o: its JSON encoding, where only
// the overridden limits appear. Non-finite numbers cannot be encoded.
func encodeLimits(o tenancy.LimitOverrides) ([]byte, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("limit overrides: %w", err)
	}
	return b, nil
}

// decodeLimits parses a stored overrides document. Keys it does not know are
// ignored, so a document written by a newer version still loads (a later
// read-modify-write by this version drops them).
func decodeLimits(doc []byte) (tenancy.LimitOverrides, error) {
	var o tenancy.LimitOverrides
	if len(doc) > maxLimitsJSON {
		return o, fmt.Errorf("limit overrides: document of %d bytes exceeds %d", len(doc), maxLimitsJSON)
	}
	if t := bytes.TrimSpace(doc); len(t) == 0 || t[0] != '{' {
		return o, errors.New("limit overrides: not a JSON object")
	}
	if err := json.Unmarshal(doc, &o); err != nil {
		return tenancy.LimitOverrides{}, fmt.Errorf("limit overrides: %w", err)
	}
	return o, nil
}
