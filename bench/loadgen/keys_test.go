package loadgen

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []TenantKey
		wantErr []string
	}{
		{
			name: "two tenants with comments and blank lines",
			in:   "# tenant key\n\nacme abk_1\n  globex\tabk_2  \n# end\n",
			want: []TenantKey{{Tenant: "acme", Secret: "abk_1"}, {Tenant: "globex", Secret: "abk_2"}},
		},
		{name: "no trailing newline", in: "acme abk_1", want: []TenantKey{{Tenant: "acme", Secret: "abk_1"}}},
		{name: "crlf", in: "acme abk_1\r\n", want: []TenantKey{{Tenant: "acme", Secret: "abk_1"}}},
		{name: "empty", in: "", wantErr: []string{"no tenants"}},
		{name: "only comments", in: "# nothing\n", wantErr: []string{"no tenants"}},
		{name: "every bad line reported", in: "acme\nok abk\nx y z\n", wantErr: []string{"line 1: want", "line 3: want", "got 3 fields"}},
		{name: "control character in key", in: "acme abk\x01x\n", wantErr: []string{"line 1 (\"acme\")", "cannot go into a header"}},
		{name: "line too long", in: "acme " + strings.Repeat("k", maxKeyLineBytes) + "\n", wantErr: []string{"longer than 4096 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKeys(strings.NewReader(tt.in))
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				require.NotContains(t, err.Error(), "abk", "secrets never appear in errors")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseKeys_Limits(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range MaxTenants + 1 {
		b.WriteString(TenantName("x", i))
		b.WriteString(" k\n")
	}
	_, err := ParseKeys(strings.NewReader(b.String()))
	require.ErrorContains(t, err, "more than 65536 tenants")

	big := strings.Repeat("# "+strings.Repeat("c", 1000)+"\n", MaxKeysFileBytes/1000+10)
	_, err = ParseKeys(strings.NewReader("acme k\n" + big))
	require.ErrorContains(t, err, "larger than")
}

func TestFormatKeys_RoundTrip(t *testing.T) {
	t.Parallel()
	keys := []TenantKey{{Tenant: "loadgen-abc-01", Secret: "abk_x"}, {Tenant: "loadgen-abc-02", Secret: "abk_y"}}
	var buf bytes.Buffer
	require.NoError(t, FormatKeys(&buf, keys))
	got, err := ParseKeys(&buf)
	require.NoError(t, err)
	require.Equal(t, keys, got)

	require.Error(t, FormatKeys(&buf, []TenantKey{{Tenant: "#a", Secret: "x"}}))
	require.Error(t, FormatKeys(&buf, []TenantKey{{Tenant: "a b", Secret: "x"}}))
	require.Error(t, FormatKeys(&buf, []TenantKey{{Tenant: "a", Secret: ""}}))
}

func FuzzParseKeys(f *testing.F) {
	f.Add("acme abk_1\nglobex abk_2\n")
	f.Add("# c\n\n a\tb \r\n")
	f.Add("x y z\n\x00\xff q\n")
	f.Fuzz(func(t *testing.T, in string) {
		keys, err := ParseKeys(strings.NewReader(in))
		if err != nil {
			require.Nil(t, keys)
			return
		}
		require.NotEmpty(t, keys)
		require.LessOrEqual(t, len(keys), MaxTenants)
		for _, k := range keys {
			require.NotEmpty(t, k.Tenant)
			require.NotEmpty(t, k.Secret)
			require.True(t, validSecret(k.Secret))
		}
		// What parses and can be written parses back the same.
		var buf bytes.Buffer
		if FormatKeys(&buf, keys) == nil {
			again, err := ParseKeys(&buf)
			require.NoError(t, err)
			require.Equal(t, keys, again)
		}
	})
}
