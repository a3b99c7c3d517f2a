package auth

import (
	"strconv"
	"strings"
)

// Scope is a permission carried by a tenant API key. The values follow the
// public enum (SCOPE_UNSPECIFIED = 0, SCOPE_INGEST = 1, SCOPE_QUERY = 2), but the
// mapping from the generated protobuf enum is done by the caller.
type Scope int

const (
	// ScopeUnspecified is the zero value; it grants nothing and no method can
	// require it.
	ScopeUnspecified Scope = iota
	// ScopeIngest allows sending events (IngestService).
	ScopeIngest
	// ScopeQuery allows reading rollups (QueryService).
	ScopeQuery

	scopeEnd // one past the last valid scope
)

// Valid reports whether s is a scope that can be granted and required.
func (s Scope) Valid() bool { return s > ScopeUnspecified && s < scopeEnd }

// String returns the public enum name of s (for example "SCOPE_INGEST"), which
// is also what error messages show to clients.
func (s Scope) String() string {
	switch s {
	case ScopeUnspecified:
		return "SCOPE_UNSPECIFIED"
	case ScopeIngest:
		return "SCOPE_INGEST"
	case ScopeQuery:
		return "SCOPE_QUERY"
	default:
		return "Scope(" + strconv.Itoa(int(s)) + ")"
	}
}

// Scopes is a set of valid scopes. The zero value is the empty set.
type Scopes uint32

// NewScopes returns the set of the given scopes; invalid ones are dropped, so a
// scope unknown to this binary never grants anything.
func NewScopes(scopes ...Scope) Scopes {
	var set Scopes
	for _, s := range scopes {
		if s.Valid() {
			set |= 1 << uint(s)
		}
	}
	return set
}

// Has reports whether s is in the set.
func (set Scopes) Has(s Scope) bool { return s.Valid() && set&(1<<uint(s)) != 0 }

// List returns the scopes in the set in ascending order.
func (set Scopes) List() []Scope {
	var out []Scope
	for s := ScopeUnspecified + 1; s < scopeEnd; s++ {
		if set.Has(s) {
			out = append(out, s)
		}
	}
	return out
}

// String returns the scope names joined by commas, or "" for the empty set.
func (set Scopes) String() string {
	names := make([]string, 0, scopeEnd)
	for _, s := range set.List() {
		names = append(names, s.String())
	}
	return strings.Join(names, ",")
}
