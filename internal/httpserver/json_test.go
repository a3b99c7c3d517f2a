package httpserver

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	ingestv1 "github.com/abacus-analytics/abacus/gen/abacus/ingest/v1"
)

func TestBodyErrorsNameTheField(t *testing.T) {
	t.Parallel()
	m := newJSONMarshaler()
	tests := []struct{ body, want string }{
		{`{"events":[{"event_id":5}]}`, "invalid JSON body: (line 1:24): invalid value for string field event_id: 5"},
		{`{"events":[{"user_id":true}]}`, "field user_id"},
		{`{"events":[{"tenant_id":"x"}]}`, `unknown field "tenant_id"`},
		{`{"events":`, "invalid JSON body"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			t.Parallel()
			err := m.NewDecoder(strings.NewReader(tc.body)).Decode(&ingestv1.IngestRequest{})
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "\u00a0")
		})
	}
	require.ErrorIs(t, m.NewDecoder(strings.NewReader("")).Decode(&ingestv1.IngestRequest{}), io.EOF, "an empty body stays io.EOF for the gateway")

	big := http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(`{"events":[{"event_id":"`+strings.Repeat("a", 100)+`"}]}`)), 10)
	err := m.NewDecoder(big).Decode(&ingestv1.IngestRequest{})
	require.EqualError(t, err, "request body larger than 10 bytes")
}

// FuzzJSONBody feeds arbitrary request bodies through the gateway's JSON decoder: it never
// panics, and every error is a client-facing message.
func FuzzJSONBody(f *testing.F) {
	for _, seed := range []string{
		`{"events":[{"event_id":"a","type":"t","timestamp":"2026-01-01T00:00:00Z","properties":{"k":"v"},"value":1.5}]}`,
		`{"events":[{"event_id":5}]}`, `{"events":"x"}`, `[]`, `{"events":[{"value":"NaN"}]}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	m := newJSONMarshaler()
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ingestv1.IngestRequest
		err := m.NewDecoder(bytes.NewReader(body)).Decode(&req)
		if err != nil && !errors.Is(err, io.EOF) && !strings.HasPrefix(err.Error(), "invalid JSON body: ") {
			t.Fatalf("unexpected error shape: %v", err)
		}
		if err == nil {
			if _, err := m.Marshal(&req); err != nil {
				t.Fatalf("decoded request does not marshal back: %v", err)
			}
		}
	})
}
