package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of a keys file.
const (
	// MaxKeysFileBytes bounds the size of a keys file.
	MaxKeysFileBytes = 16 << 20
	// maxKeyLineBytes bounds one line: a tenant id and a secret are far shorter.
	maxKeyLineBytes = 4096
)

// ParseKeys reads a keys file: one tenant per line, "<tenant_id> <api_key>" separated by
// spaces or tabs, in Zipf rank order (the first line gets the most traffic). Blank lines and
// lines starting with # are ignored. It reports every malformed line, at most MaxTenants
// tenants and MaxKeysFileBytes bytes. Secrets never appear in its errors.
func ParseKeys(r io.Reader) ([]TenantKey, error) {
	cr := &countingReader{r: io.LimitReader(r, MaxKeysFileBytes+1)}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 0, 1024), maxKeyLineBytes)
	var keys []TenantKey
	var errs []error
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			errs = append(errs, fmt.Errorf("loadgen: keys: line %d: want \"<tenant_id> <api_key>\", got %d fields", line, len(fields)))
			continue
		}
		k := TenantKey{Tenant: fields[0], Secret: fields[1]}
		if !validSecret(k.Secret) {
			errs = append(errs, fmt.Errorf("loadgen: keys: line %d (%s): API key has characters that cannot go into a header", line, printable(k.Tenant)))
			continue
		}
		if len(keys) == MaxTenants {
			errs = append(errs, fmt.Errorf("loadgen: keys: more than %d tenants", MaxTenants))
			break
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line %d is longer than %d bytes", line+1, maxKeyLineBytes)
		}
		errs = append(errs, fmt.Errorf("loadgen: keys: %w", err))
	}
	if cr.n > MaxKeysFileBytes {
		errs = append(errs, fmt.Errorf("loadgen: keys: file is larger than %d bytes", MaxKeysFileBytes))
	}
	if len(errs) == 0 && len(keys) == 0 {
		errs = append(errs, errors.New("loadgen: keys: no tenants in the file"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// FormatKeys writes keys in the format ParseKeys reads.
func FormatKeys(w io.Writer, keys []TenantKey) error {
	var b strings.Builder
	b.WriteString("# tenant_id api_key\n")
	for _, k := range keys {
		if k.Tenant == "" || !validSecret(k.Tenant) || strings.HasPrefix(k.Tenant, "#") || k.Secret == "" || !validSecret(k.Secret) {
			return fmt.Errorf("loadgen: keys: tenant %q cannot be written", printable(k.Tenant))
		}
		b.WriteString(k.Tenant)
		b.WriteByte(' ')
		b.WriteString(k.Secret)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printable quotes s for an error message, cut to 64 bytes.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
