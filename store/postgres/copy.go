package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// ApplyBatch sends its bulk rows (claims and raw events) with COPY in
// PostgreSQL's binary format, encoded here rather than through pgx's
// per-value type dispatch: the rows have a handful of fixed column types,
// and encoding them directly costs a fraction of the CPU, which on a small
// machine is shared with PostgreSQL itself. The format is specified in the
// "Binary Format" section of https://www.postgresql.org/docs/current/sql-copy.html.

// Statements for copyRows.
const (
	sqlCopyClaims = `COPY event_dedup (tenant_id, event_id, event_time) FROM STDIN (FORMAT binary)`
	sqlCopyEvents = `COPY events (tenant_id, event_id, event_type, user_id, session_id,
                   event_time, received_at, properties, value) FROM STDIN (FORMAT binary)`
)

// copyHeader starts a binary COPY stream: signature, flags (none), header
// extension length (0).
const copyHeader = "PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// copyTrailer ends a binary COPY stream: a field count of -1.
const copyTrailer = "\xff\xff"

// copyRows runs sql, a COPY ... FROM STDIN (FORMAT binary), on conn with n
// rows, row i appended to a buffer by encode, and returns the number of rows
// the server stored.
func copyRows(ctx context.Context, conn *pgconn.PgConn, sql string, n int, encode func(buf []byte, i int) []byte) (int64, error) {
	r := &copyReader{rows: n, encode: encode}
	tag, err := conn.CopyFrom(ctx, r, sql)
	// On some connection failures CopyFrom returns while its sending
	// goroutine may still call Read once more; after close, that Read
	// touches nothing of the caller's.
	r.close()
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// copyReader is the io.Reader of a binary COPY stream. It encodes rows as
// the connection asks for data, so PostgreSQL starts on the first rows while
// later ones are still being encoded.
type copyReader struct {
	rows   int
	encode func(buf []byte, i int) []byte

	mu      sync.Mutex
	closed  bool
	next    int
	started bool
	done    bool
	// pending holds encoded bytes not yet read.
	pending []byte
	buf     []byte
}

// close makes every later Read return io.EOF without encoding, and waits
// for a Read in progress.
func (r *copyReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}

// Read implements io.Reader.
func (r *copyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, io.EOF
	}
	for len(r.pending) < len(p) && !r.done {
		b := r.buf[:0]
		if len(r.pending) > 0 {
			b = append(b, r.pending...)
		}
		if !r.started {
			b = append(b, copyHeader...)
			r.started = true
		}
		// Encode about a read's worth of rows at a time.
		for len(b) < len(p) && r.next < r.rows {
			b = r.encode(b, r.next)
			r.next++
		}
		if r.next == r.rows {
			b = append(b, copyTrailer...)
			r.done = true
		}
		r.buf, r.pending = b, b
	}
	if len(r.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) == 0 {
		// Everything buffered was read; reuse the buffer from its start.
		r.pending = r.buf[:0]
	}
	return n, nil
}

// appendFieldCount starts a tuple of n fields.
func appendFieldCount(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint16(b, uint16(n))
}

// appendText appends a text field. s must be valid UTF-8 without NUL (see
// Event.Validate).
func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// unixToY2KMicros is the number of microseconds from the Unix epoch to
// PostgreSQL's, 2000-01-01 00:00 UTC.
const unixToY2KMicros = 946_684_800 * 1_000_000

// appendTimestamptz appends a timestamptz field: microseconds since
// 2000-01-01 UTC, truncated like pgx's own encoding. Unix seconds times 10^6
// cannot overflow for years 1-9999.
func appendTimestamptz(b []byte, t time.Time) []byte {
	micros := t.Unix()*1_000_000 + int64(t.Nanosecond()/1000) - unixToY2KMicros
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(micros))
}

// appendFloat8 appends a double precision field, or NULL for nil.
func appendFloat8(b []byte, v *float64) []byte {
	if v == nil {
		return binary.BigEndian.AppendUint32(b, math.MaxUint32) // length -1: NULL
	}
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(*v))
}

// appendJSONBObject appends a jsonb field holding the object of p: format
// version 1, then the JSON text.
func appendJSONBObject(b []byte, p map[string]string) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0, 1)
	b = appendJSONObject(b, p)
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// appendJSONObject appends p as a JSON object. Key order does not matter:
// jsonb stores keys in its own order.
func appendJSONObject(b []byte, p map[string]string) []byte {
	b = append(b, '{')
	first := true
	for k, v := range p {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (RFC 8259): quote, backslash
// and control characters escaped, other characters as they are. Invalid
// UTF-8, which Event.Validate refuses, becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendClaimRow appends an event_dedup row for sqlCopyClaims.
func appendClaimRow(b []byte, e *Event) []byte {
	b = appendFieldCount(b, 3)
	b = appendText(b, string(e.Tenant))
	b = appendText(b, e.EventID)
	return appendTimestamptz(b, e.Time)
}

// appendEventRow appends an events row for sqlCopyEvents.
func appendEventRow(b []byte, e *Event) []byte {
	b = appendFieldCount(b, 9)
	b = appendText(b, string(e.Tenant))
	b = appendText(b, e.EventID)
	b = appendText(b, e.Type)
	b = appendText(b, e.UserID)
	b = appendText(b, e.SessionID)
	b = appendTimestamptz(b, e.Time)
	b = appendTimestamptz(b, e.ReceivedAt)
	b = appendJSONBObject(b, e.Properties)
	return appendFloat8(b, e.Value)
}

// copyCount checks that a COPY stored want rows.
func copyCount(what string, got int64, want int) error {
	if got != int64(want) {
		return fmt.Errorf("%s: copied %d rows, want %d", what, got, want)
	}
	return nil
}
