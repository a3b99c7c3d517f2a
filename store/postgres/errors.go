package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Domain errors returned (wrapped with the operation) by this package. Match
// them with errors.Is; the message of the wrapping error names the operation
// and the object, never SQL text.
var (
	// ErrNotFound is returned when the addressed row does not exist, or exists
	// but belongs to another tenant (the two are indistinguishable on purpose).
	ErrNotFound = errors.New("not found")

	// ErrAlreadyExists is returned when a create would duplicate a primary
	// key, such as an existing tenant ID or API key ID.
	ErrAlreadyExists = errors.New("already exists")

	// ErrFenced is returned by [DB.ApplyBatch] when a consumer-offset row of
	// the batch is owned by a newer consumer-group generation. The whole
	// transaction, events and rollups included, has been rolled back: the
	// caller lost its partitions and must drop the batch, not retry it.
	ErrFenced = errors.New("fenced by a newer consumer generation")

	// ErrFailedPrecondition is returned when the addressed row exists but
	// its state forbids the operation, such as rotating an API key that is
	// revoked, expired or already rotated. Retrying the same call cannot
	// succeed; the message says which state is in the way.
	ErrFailedPrecondition = errors.New("failed precondition")

	// ErrInvalidArgument is returned for arguments this package refuses before
	// touching the database (an unknown granularity, an event without an ID,
	// a tenant state outside the allowed set, ...).
	ErrInvalidArgument = errors.New("invalid argument")
)

// PostgreSQL error codes mapped to domain errors, from
// https://www.postgresql.org/docs/15/errcodes-appendix.html.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
	pgCheckViolation      = "23514"
	// Text PostgreSQL cannot store: a NUL byte, or bytes that are not
	// UTF-8. Protobuf strings may carry NUL, so this is client input.
	pgCharacterNotInRepertoire = "22021"
	// A lock wait that closed a cycle; PostgreSQL aborted this statement.
	pgDeadlockDetected = "40P01"
)

// wrapErr maps a database error to a domain error, prefixed with the operation
// ("postgres: create tenant \"acme\""). Errors without a domain meaning keep
// their cause in the chain for logging.
func wrapErr(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgUniqueViolation:
			return fmt.Errorf("%s: %w", op, ErrAlreadyExists)
		case pgForeignKeyViolation:
			// Every foreign key in the schema points at a parent the caller
			// named (the tenant of an API key), so a violation means that
			// parent does not exist.
			return fmt.Errorf("%s: %w", op, ErrNotFound)
		case pgCheckViolation:
			return fmt.Errorf("%s: %w: violates %s", op, ErrInvalidArgument, pgErr.ConstraintName)
		case pgCharacterNotInRepertoire:
			return fmt.Errorf("%s: %w: text with a NUL byte or invalid UTF-8", op, ErrInvalidArgument)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isDeadlock reports whether err is PostgreSQL aborting a statement whose
// lock wait closed a cycle.
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgDeadlockDetected
}

// invalidf returns an ErrInvalidArgument for op with a reason.
func invalidf(op, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", op, ErrInvalidArgument, fmt.Sprintf(format, args...))
}
