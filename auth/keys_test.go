package auth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// deterministicKey builds a valid key from a seed, so fuzz failures replay.
func deterministicKey(t testing.TB, seed uint64) Key {
	t.Helper()
	var s [32]byte
	for i := range s {
		s[i] = byte(seed >> (8 * (i % 8)))
	}
	k, err := generateKey(rand.NewChaCha8(s))
	require.NoError(t, err)
	return k
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	t.Parallel()

	seen := make(map[string]bool)
	for range 200 {
		k, err := GenerateKey()
		require.NoError(t, err)
		require.Len(t, k.Secret, KeyLength)
		require.Equal(t, 58, KeyLength)
		require.True(t, strings.HasPrefix(k.Secret, KeyPrefix))
		require.Len(t, k.ID, KeyIDLength)
		require.Equal(t, k.Secret[4:20], k.ID)
		for _, c := range k.Secret[len(KeyPrefix):] {
			require.Contains(t, base62Alphabet, string(c))
		}
		sum := sha256.Sum256([]byte(k.Secret))
		require.Equal(t, sum[:], k.Hash)
		require.Equal(t, k.Hash, HashSecret(k.Secret))

		id, err := ParseKey(k.Secret)
		require.NoError(t, err)
		require.Equal(t, k.ID, id)

		require.False(t, seen[k.ID], "duplicate key ID")
		seen[k.ID] = true
	}
}

func TestKeyDoesNotLeakSecret(t *testing.T) {
	t.Parallel()

	k, err := GenerateKey()
	require.NoError(t, err)
	secretPart := k.Secret[len(KeyPrefix)+KeyIDLength:]

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("created", slog.Any("key", k))
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), logs.String()} {
		require.NotContains(t, s, secretPart)
		require.Contains(t, s, k.ID)
	}
}

func TestChecksumEncoding(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		sum  uint32
		want string
	}{
		{name: "zero is padded", sum: 0, want: "000000"},
		{name: "one", sum: 1, want: "000001"},
		{name: "61 is the last digit", sum: 61, want: "00000z"},
		{name: "62 carries", sum: 62, want: "000010"},
		{name: "max uint32", sum: 1<<32 - 1, want: "4gfFC3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, encodeChecksum(tt.sum))
		})
	}
}

// encodeChecksum is the test's independent base62 encoder.
func encodeChecksum(sum uint32) string {
	var out [keyChecksumLength]byte
	for i := range out {
		out[i] = '0'
	}
	for i := len(out) - 1; sum > 0; i-- {
		out[i] = base62Alphabet[sum%62]
		sum /= 62
	}
	return string(out[:])
}

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()

	valid := deterministicKey(t, 42).Secret
	replaceAt := func(s string, i int, c byte) string { b := []byte(s); b[i] = c; return string(b) }
	otherChar := func(c byte) byte {
		if c == 'a' {
			return 'b'
		}
		return 'a'
	}

	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "empty", in: "", wantErr: "length 0"},
		{name: "too short", in: valid[:KeyLength-1], wantErr: "length 57"},
		{name: "too long", in: valid + "0", wantErr: "length 59"},
		{name: "wrong prefix", in: "abx_" + valid[4:], wantErr: "prefix"},
		{name: "uppercase prefix", in: "ABK_" + valid[4:], wantErr: "prefix"},
		{name: "hyphen in body", in: replaceAt(valid, 10, '-'), wantErr: "invalid character at offset 10"},
		{name: "underscore in body", in: replaceAt(valid, 30, '_'), wantErr: "invalid character at offset 30"},
		{name: "space in checksum", in: replaceAt(valid, KeyLength-1, ' '), wantErr: "invalid character at offset 57"},
		{name: "non-ascii", in: valid[:50] + "é" + valid[52:], wantErr: "invalid character at offset 50"},
		{name: "changed ID char", in: replaceAt(valid, 5, otherChar(valid[5])), wantErr: "checksum mismatch"},
		{name: "changed secret char", in: replaceAt(valid, 40, otherChar(valid[40])), wantErr: "checksum mismatch"},
		{name: "changed checksum char", in: replaceAt(valid, 55, otherChar(valid[55])), wantErr: "checksum mismatch"},
		{name: "case flipped", in: flipFirstLetterCase(valid), wantErr: "checksum mismatch"},
		{name: "adjacent swap", in: swapFirstDistinctPair(valid), wantErr: "checksum mismatch"},
		{name: "checksum over 2^32", in: valid[:KeyLength-keyChecksumLength] + "zzzzzz", wantErr: "checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := ParseKey(tt.in)
			require.ErrorIs(t, err, ErrMalformedKey)
			require.ErrorContains(t, err, tt.wantErr)
			require.Empty(t, id)
			if len(tt.in) > 20 {
				require.NotContains(t, err.Error(), tt.in[20:], "the error must not echo the secret")
			}
		})
	}
}

func flipFirstLetterCase(s string) string {
	b := []byte(s)
	for i := len(KeyPrefix); i < len(b); i++ {
		switch c := b[i]; {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
			return string(b)
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
			return string(b)
		}
	}
	panic("no letter")
}

func swapFirstDistinctPair(s string) string {
	b := []byte(s)
	for i := len(KeyPrefix); i+1 < len(b); i++ {
		if b[i] != b[i+1] {
			b[i], b[i+1] = b[i+1], b[i]
			return string(b)
		}
	}
	panic("no distinct pair")
}

func TestRandomBase62IsUnbiased(t *testing.T) {
	t.Parallel()

	// Feed every byte value equally often: rejection sampling must turn that
	// into exactly equal character counts.
	var src bytes.Buffer
	for range 64 {
		for b := range 256 {
			src.WriteByte(byte(b))
		}
	}
	dst := make([]byte, 62*4*64)
	require.NoError(t, randomBase62(&src, dst))
	counts := make(map[byte]int)
	for _, c := range dst {
		counts[c]++
	}
	require.Len(t, counts, 62)
	for c, n := range counts {
		require.Equal(t, 4*64, n, "character %q", c)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("", uint64(0), uint8(0), byte('a'))
	f.Add(deterministicKey(f, 1).Secret, uint64(1), uint8(10), byte('Z'))
	f.Add("abk_"+strings.Repeat("0", 54), uint64(2), uint8(57), byte('0'))
	f.Add("abk_\xff"+strings.Repeat("a", 53), uint64(3), uint8(3), byte('_'))

	f.Fuzz(func(t *testing.T, s string, seed uint64, pos uint8, c byte) {
		// Any input: no panic, and success only for the documented shape.
		if id, err := ParseKey(s); err == nil {
			require.Len(t, s, KeyLength)
			require.True(t, strings.HasPrefix(s, KeyPrefix))
			require.Equal(t, s[4:20], id)
			require.Equal(t, s[KeyLength-keyChecksumLength:], encodeChecksum(crc32.ChecksumIEEE([]byte(s[:KeyLength-keyChecksumLength]))))
		} else {
			require.ErrorIs(t, err, ErrMalformedKey)
		}

		// A generated key parses to its ID ...
		k := deterministicKey(t, seed)
		id, err := ParseKey(k.Secret)
		require.NoError(t, err)
		require.Equal(t, k.ID, id)

		// ... and any one-character change is rejected.
		i := int(pos) % KeyLength
		if k.Secret[i] == c {
			return
		}
		mutated := []byte(k.Secret)
		mutated[i] = c
		_, err = ParseKey(string(mutated))
		require.ErrorIs(t, err, ErrMalformedKey, "mutated %q at %d", c, i)
	})
}
