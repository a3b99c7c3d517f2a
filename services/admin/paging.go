package admin

import (
	"encoding/base64"
	"unicode/utf8"

	"github.com/abacus-analytics/abacus/store/postgres"
)

// Page sizes of the list RPCs, fixed by the contract ("1-1000; 0 means 100").
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// maxServedPageSize is the largest page actually served. A handler asks the
// store for one row more than the page to learn whether another page follows,
// and the store caps what it returns at postgres.MaxPageSize; when that cap
// is 1000 a request for 1000 is served 999 rows, which AIP-158 allows (a page
// may be shorter than page_size without being the last).
const maxServedPageSize = min(maxPageSize, postgres.MaxPageSize-1)

// fieldPageToken is the request field that carries a page token, named in
// BadRequest details.
const fieldPageToken = "page_token"

// pageSize returns the number of rows to return for a requested page_size,
// clamped into range whatever the validation layer let through.
func pageSize(requested int32) int {
	switch {
	case requested <= 0:
		return defaultPageSize
	case int(requested) > maxServedPageSize:
		return maxServedPageSize
	default:
		return int(requested)
	}
}

// encodePageToken returns the page token that resumes a listing after the row
// identified by lastID.
func encodePageToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// decodePageToken returns the identifier a page token resumes after, or "" for
// the empty token (the first page). valid checks the decoded identifier; a
// token that does not decode to a valid identifier is an INVALID_ARGUMENT
// naming page_token. The error never echoes the token.
func decodePageToken(token string, valid func(string) bool) (string, error) {
	if token == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) == 0 || !utf8.Valid(raw) || !valid(string(raw)) {
		return "", invalidArgument(fieldPageToken, "malformed page token; pass next_page_token of the previous page unchanged")
	}
	return string(raw), nil
}

// page trims rows, fetched with a limit of size+1, to one page and returns the
// token of the next page: empty when rows held no row beyond the page.
func page[T any](rows []T, size int, id func(T) string) ([]T, string) {
	if len(rows) <= size {
		return rows, ""
	}
	rows = rows[:size]
	return rows, encodePageToken(id(rows[size-1]))
}
