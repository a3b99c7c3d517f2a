package auth_test

import (
	"github.com/abacus-analytics/abacus/auth"
	"github.com/abacus-analytics/abacus/store/postgres"
)

// The PostgreSQL store records last use for the Toucher.
var _ auth.KeyToucher = (*postgres.DB)(nil)
