package auth

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScopes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		in        []Scope
		wantList  []Scope
		wantStr   string
		has, lack []Scope
	}{
		{name: "empty", lack: []Scope{ScopeIngest, ScopeQuery, ScopeUnspecified}},
		{name: "ingest", in: []Scope{ScopeIngest}, wantList: []Scope{ScopeIngest}, wantStr: "SCOPE_INGEST", has: []Scope{ScopeIngest}, lack: []Scope{ScopeQuery}},
		{name: "both, duplicated, any order", in: []Scope{ScopeQuery, ScopeIngest, ScopeQuery}, wantList: []Scope{ScopeIngest, ScopeQuery}, wantStr: "SCOPE_INGEST,SCOPE_QUERY", has: []Scope{ScopeIngest, ScopeQuery}},
		{name: "invalid scopes grant nothing", in: []Scope{ScopeUnspecified, Scope(99), Scope(-1), Scope(31), Scope(64)}, lack: []Scope{ScopeUnspecified, Scope(99), Scope(-1), Scope(31), Scope(64), ScopeIngest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set := NewScopes(tt.in...)
			require.Equal(t, tt.wantList, set.List())
			require.Equal(t, tt.wantStr, set.String())
			for _, s := range tt.has {
				require.True(t, set.Has(s), s)
			}
			for _, s := range tt.lack {
				require.False(t, set.Has(s), s)
			}
		})
	}
}

func TestScopeString(t *testing.T) {
	t.Parallel()

	require.Equal(t, "SCOPE_UNSPECIFIED", ScopeUnspecified.String())
	require.Equal(t, "SCOPE_INGEST", ScopeIngest.String())
	require.Equal(t, "SCOPE_QUERY", ScopeQuery.String())
	require.Equal(t, "Scope(7)", Scope(7).String())
	require.False(t, ScopeUnspecified.Valid())
	require.True(t, ScopeQuery.Valid())
}
