package tenancy

import (
	"fmt"
)

// Length bounds of a tenant ID. 63 is the longest DNS label and fits in
// PostgreSQL identifiers, Kafka record keys and Redis key prefixes alike.
const (
	MinIDLength = 3
	MaxIDLength = 63
)

// ID identifies a tenant. Obtain one from [ParseID] (untrusted input) or from
// [FromContext] (the authenticated tenant of a request); converting an arbitrary
// string with ID(s) skips validation and belongs in tests only.
type ID string

// String returns the identifier as a string.
func (id ID) String() string { return string(id) }

// ParseID validates s as a tenant identifier: 3 to 63 characters of lowercase
// ASCII letters, digits and hyphens, starting with a letter and not ending with
// a hyphen (the pattern ^[a-z][a-z0-9-]*[a-z0-9]$). Consecutive hyphens are
// allowed. The returned error wraps [ErrInvalidID] and says what is wrong.
func ParseID(s string) (ID, error) {
	if n := len(s); n < MinIDLength || n > MaxIDLength {
		if n > MaxIDLength {
			// Do not echo arbitrarily long hostile input back.
			return "", fmt.Errorf("%w: length %d, must be %d to %d characters", ErrInvalidID, n, MinIDLength, MaxIDLength)
		}
		return "", fmt.Errorf("%w: %q has length %d, must be %d to %d characters", ErrInvalidID, s, n, MinIDLength, MaxIDLength)
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9', c == '-':
			if i == 0 {
				return "", fmt.Errorf("%w: %q must start with a lowercase letter", ErrInvalidID, s)
			}
		case c >= 0x80:
			return "", fmt.Errorf("%w: %q has a non-ASCII character at offset %d; only lowercase letters, digits and hyphens are allowed", ErrInvalidID, s, i)
		default:
			return "", fmt.Errorf("%w: %q has %q at offset %d; only lowercase letters, digits and hyphens are allowed", ErrInvalidID, s, c, i)
		}
	}
	if s[len(s)-1] == '-' {
		return "", fmt.Errorf("%w: %q must not end with a hyphen", ErrInvalidID, s)
	}
	return ID(s), nil
}
