package tenancy_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/tenancy"
)

func TestParseID(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error; empty means valid
	}{
		{name: "simple", in: "acme"},
		{name: "shortest", in: "a1b"},
		{name: "digits and hyphens", in: "acme-2024-eu"},
		{name: "double hyphen allowed", in: "acme--eu"},
		{name: "longest", in: "a" + strings.Repeat("b", tenancy.MaxIDLength-1)},
		{name: "empty", in: "", wantErr: "must be 3 to 63 characters"},
		{name: "too short", in: "ab", wantErr: `"ab" has length 2`},
		{name: "too long", in: "a" + strings.Repeat("b", tenancy.MaxIDLength), wantErr: "length 64, must be 3 to 63"},
		{name: "uppercase", in: "Acme", wantErr: `'A' at offset 0`},
		{name: "uppercase inside", in: "acMe", wantErr: `'M' at offset 2`},
		{name: "leading digit", in: "1acme", wantErr: "must start with a lowercase letter"},
		{name: "leading hyphen", in: "-acme", wantErr: "must start with a lowercase letter"},
		{name: "trailing hyphen", in: "acme-", wantErr: "must not end with a hyphen"},
		{name: "underscore", in: "ac_me", wantErr: `'_' at offset 2`},
		{name: "space", in: "ac me", wantErr: `' ' at offset 2`},
		{name: "dot", in: "acme.io", wantErr: `'.' at offset 4`},
		{name: "slash", in: "acme/x", wantErr: `'/' at offset 4`},
		{name: "non-ascii", in: "acmé", wantErr: "non-ASCII character at offset 3"},
		{name: "nul byte", in: "ac\x00me", wantErr: "offset 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := tenancy.ParseID(tt.in)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.in, id.String())
				return
			}
			require.ErrorIs(t, err, tenancy.ErrInvalidID)
			require.ErrorContains(t, err, tt.wantErr)
			require.Empty(t, id)
		})
	}
}

// idPattern is the specification of a tenant ID; ParseID implements it by hand
// and the fuzz target checks the two agree.
var idPattern = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`)

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"acme", "a1b", "acme--eu", "-acme", "acme-", "Acme", "ab", "", "acmé", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tenancy.ParseID(s)
		want := len(s) >= tenancy.MinIDLength && len(s) <= tenancy.MaxIDLength && idPattern.MatchString(s)
		if want {
			require.NoError(t, err)
			require.Equal(t, s, string(id))
			return
		}
		require.ErrorIs(t, err, tenancy.ErrInvalidID)
		require.Empty(t, id)
		if len(s) > tenancy.MaxIDLength {
			require.NotContains(t, err.Error(), s, "long input must not be echoed")
		}
	})
}
