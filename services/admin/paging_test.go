package admin

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPageSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   int32
		want int
	}{
		{in: -1, want: defaultPageSize},
		{in: 0, want: defaultPageSize},
		{in: 1, want: 1},
		{in: 999, want: 999},
		{in: 1000, want: maxServedPageSize},
		{in: 1 << 30, want: maxServedPageSize},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, pageSize(tt.in), "page_size %d", tt.in)
	}
}

func FuzzPageToken(f *testing.F) {
	for _, s := range []string{"", "acme", "tenant-a", "0123456789abcdef", "\xff", "a\x00b"} {
		f.Add(s)
		f.Add(encodePageToken(s))
	}
	valid := func(s string) bool { return validKeyID(s) || validTenantToken(s) }
	_, malformed := decodePageToken("!", valid)
	f.Fuzz(func(t *testing.T, token string) {
		id, err := decodePageToken(token, valid)
		if err != nil {
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Equal(t, malformed.Error(), err.Error(), "one message, never echoing the token")
			return
		}
		if token == "" {
			require.Empty(t, id)
			return
		}
		require.True(t, valid(id))
		// A decoded token re-encodes to an equivalent token.
		again, err := decodePageToken(encodePageToken(id), valid)
		require.NoError(t, err)
		require.Equal(t, id, again)
	})
}
