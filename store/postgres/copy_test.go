package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`quote " and \ backslash`, `"quote \" and \\ backslash"`},
		{"new\nline\ttab\rcr", `"new\nline\ttab\rcr"`},
		{"\x01\x1f", `"\u0001\u001f"`},
		{"ünïcødé ✓ 😀", `"ünïcødé ✓ 😀"`},
		{"<html>&", `"<html>&"`},
		{"bad \xff byte", `"bad \ufffd byte"`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, string(appendJSONString(nil, tt.in)), "%q", tt.in)
	}
}

// FuzzAppendJSONObject checks the properties encoder against encoding/json:
// the object it writes parses back to the same map (PostgreSQL's jsonb
// parser accepts what encoding/json accepts here: RFC 8259 text).
func FuzzAppendJSONObject(f *testing.F) {
	f.Add("plan", "pro", "country", "NZ")
	f.Add("", "", "k", `"'\`)
	f.Add("\x01\n", "\u2028", "😀", "\x7f")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		p := map[string]string{k1: v1, k2: v2}
		for k, v := range p {
			if !validText(k) || !validText(v) {
				return // Event.Validate refuses these
			}
		}
		out := appendJSONObject(nil, p)
		require.True(t, utf8.Valid(out))
		var back map[string]string
		require.NoError(t, json.Unmarshal(out, &back), "%s", out)
		require.Equal(t, p, back)
	})
}

func TestAppendTimestamptz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		at   time.Time
		want int64 // microseconds since 2000-01-01 UTC
	}{
		{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(2000, 1, 1, 0, 0, 1, 1500, time.UTC), 1_000_001},
		{time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), -1_000_000},
		{time.Date(2000, 1, 1, 1, 0, 0, 0, time.FixedZone("plus1", 3600)), 0},
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), -63_082_281_600_000_000},
		{time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), 252_455_615_999_999_999},
	}
	for _, tt := range tests {
		b := appendTimestamptz(nil, tt.at)
		require.Len(t, b, 12)
		require.Equal(t, uint32(8), binary.BigEndian.Uint32(b))
		require.Equal(t, tt.want, int64(binary.BigEndian.Uint64(b[4:])), tt.at.String())
	}
}

// TestCopyReader checks that the stream is the same however the connection
// reads it: header, every row once and in order, trailer, then EOF.
func TestCopyReader(t *testing.T) {
	t.Parallel()
	row := func(buf []byte, i int) []byte { return appendText(appendFieldCount(buf, 1), "row-"+strconv.Itoa(i)) }
	for _, rows := range []int{0, 1, 7, 5000} {
		var want []byte
		want = append(want, copyHeader...)
		for i := range rows {
			want = row(want, i)
		}
		want = append(want, copyTrailer...)
		for _, readSize := range []int{1, 3, 64, 65531} {
			r := &copyReader{rows: rows, encode: row}
			var got bytes.Buffer
			buf := make([]byte, readSize)
			for {
				n, err := r.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				require.Positive(t, n)
			}
			require.Equal(t, want, got.Bytes(), "%d rows read %d bytes at a time", rows, readSize)
		}
	}
}
