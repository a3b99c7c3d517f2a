package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

// Layout of an API key: KeyPrefix, then KeyIDLength + keySecretLength +
// keyChecksumLength base62 characters.
const (
	// KeyPrefix starts every API key, so that keys are recognisable in logs,
	// config files and secret scanners.
	KeyPrefix = "abk_"
	// KeyIDLength is the length of the public key ID (≈95 random bits).
	KeyIDLength = 16
	// KeyLength is the length of a complete API key.
	KeyLength = len(KeyPrefix) + KeyIDLength + keySecretLength + keyChecksumLength

	keySecretLength   = 32 // ≈190 random bits
	keyChecksumLength = 6  // 62^6 > 2^32, so any CRC32 fits

	base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// base62Value maps a byte to its base62 digit value, or -1.
var base62Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(base62Alphabet) {
		t[base62Alphabet[i]] = int8(i)
	}
	return t
}()

// Key is a newly generated API key.
//
// Its String, GoString and LogValue methods leave the secret out, so printing
// or logging a Key by accident does not leak it; read the Secret field
// explicitly to show it to its owner, once.
type Key struct {
	// ID is the public key ID: stored in clear, logged, shown in listings.
	ID string
	// Secret is the complete key (KeyLength characters) that the client sends
	// as its bearer token. It is shown once and never stored.
	Secret string
	// Hash is HashSecret(Secret), the only form of the secret that is stored.
	Hash []byte
}

// String returns the key ID and the prefix, never the secret.
func (k Key) String() string { return KeyPrefix + k.ID + "…(redacted)" }

// GoString is like String, so that %#v does not print the secret either.
func (k Key) GoString() string { return fmt.Sprintf("auth.Key{ID:%q, Secret:(redacted)}", k.ID) }

// LogValue logs the key ID only.
func (k Key) LogValue() slog.Value { return slog.GroupValue(slog.String("key_id", k.ID)) }

// GenerateKey returns a new random API key from crypto/rand.
func GenerateKey() (Key, error) {
	return generateKey(rand.Reader)
}

func generateKey(r io.Reader) (Key, error) {
	buf := make([]byte, KeyLength)
	copy(buf, KeyPrefix)
	body := buf[len(KeyPrefix) : len(KeyPrefix)+KeyIDLength+keySecretLength]
	if err := randomBase62(r, body); err != nil {
		return Key{}, fmt.Errorf("auth: generate API key: %w", err)
	}
	putChecksum(buf)
	secret := string(buf)
	return Key{
		ID:     secret[len(KeyPrefix) : len(KeyPrefix)+KeyIDLength],
		Secret: secret,
		Hash:   HashSecret(secret),
	}, nil
}

// randomBase62 fills dst with uniformly random base62 characters. Bytes of 248
// and above are rejected so that every character has probability exactly 1/62
// (248 = 4·62); plain modulo would favour the first eight characters.
func randomBase62(r io.Reader, dst []byte) error {
	var pool [64]byte
	filled := 0
	for filled < len(dst) {
		if _, err := io.ReadFull(r, pool[:]); err != nil {
			return err
		}
		for _, b := range pool {
			if b >= 248 {
				continue
			}
			dst[filled] = base62Alphabet[b%62]
			filled++
			if filled == len(dst) {
				break
			}
		}
	}
	return nil
}

// putChecksum writes the checksum of key[:KeyLength-keyChecksumLength] into the
// last keyChecksumLength bytes of key.
func putChecksum(key []byte) {
	body := key[:KeyLength-keyChecksumLength]
	sum := crc32.ChecksumIEEE(body)
	out := key[KeyLength-keyChecksumLength:]
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62Alphabet[sum%62]
		sum /= 62
	}
}

// ParseKey checks that secret is a well-formed API key — prefix, length,
// alphabet and checksum — and returns its key ID. It needs no lookup, so typos
// and garbage are rejected before they reach the store. The returned error
// wraps [ErrMalformedKey] and never contains the input.
//
// A well-formed key is not an authentic one: the checksum catches mistakes, not
// forgeries. Only the stored hash decides.
func ParseKey(secret string) (id string, err error) {
	if len(secret) != KeyLength {
		return "", fmt.Errorf("%w: length %d, want %d", ErrMalformedKey, len(secret), KeyLength)
	}
	if secret[:len(KeyPrefix)] != KeyPrefix {
		return "", fmt.Errorf("%w: missing %q prefix", ErrMalformedKey, KeyPrefix)
	}
	for i := len(KeyPrefix); i < len(secret); i++ {
		if base62Value[secret[i]] < 0 {
			return "", fmt.Errorf("%w: invalid character at offset %d", ErrMalformedKey, i)
		}
	}
	var want uint64
	for i := KeyLength - keyChecksumLength; i < KeyLength; i++ {
		want = want*62 + uint64(base62Value[secret[i]])
	}
	if got := crc32.ChecksumIEEE([]byte(secret[:KeyLength-keyChecksumLength])); uint64(got) != want {
		return "", fmt.Errorf("%w: checksum mismatch", ErrMalformedKey)
	}
	return secret[len(KeyPrefix) : len(KeyPrefix)+KeyIDLength], nil
}

// HashSecret returns the SHA-256 digest of the complete key; only this digest
// is stored.
//
// A fast hash is right here, unlike for passwords: the secret carries ≈190 bits
// from crypto/rand, so a leaked digest cannot be reversed by guessing however
// fast the hash is, and slow password hashes (bcrypt, argon2) exist only to
// protect low-entropy, human-chosen secrets. They would also cost tens of
// milliseconds of CPU per request, turning every bogus key into a cheap
// denial-of-service lever.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}
