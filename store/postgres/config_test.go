package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/abacus-analytics/abacus/store/postgres"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     postgres.Config
		wantErr []string // substrings; nil means valid
	}{
		{name: "minimal", cfg: postgres.Config{URL: "postgres://u@localhost:5432/db"}},
		{name: "key value form", cfg: postgres.Config{URL: "host=localhost dbname=db", MaxConns: 4, StatementTimeout: time.Second}},
		{name: "missing URL", cfg: postgres.Config{}, wantErr: []string{"URL is required"}},
		{
			name:    "bad URL hides password",
			cfg:     postgres.Config{URL: "postgres://u:s3cret@host:notaport/db"},
			wantErr: []string{"not a valid PostgreSQL connection string"},
		},
		{
			name:    "every problem at once",
			cfg:     postgres.Config{MaxConns: -1, StatementTimeout: -time.Second},
			wantErr: []string{"URL is required", "MaxConns", "StatementTimeout"},
		},
		{name: "sub-millisecond timeout", cfg: postgres.Config{URL: "postgres://localhost/db", StatementTimeout: time.Microsecond}, wantErr: []string{"at least 1ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.Contains(t, err.Error(), want)
			}
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestOpenFailsFast(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(t.Context(), postgres.Config{}, nil)
	require.ErrorContains(t, err, "URL is required")
}

func TestOpenSessionSettings(t *testing.T) {
	t.Parallel()
	db := openDB(t, postgres.Config{StatementTimeout: 250 * time.Millisecond, MaxConns: 3})
	require.NoError(t, db.Ping(t.Context()))
	require.EqualValues(t, 3, db.Pool().Config().MaxConns)

	var app, zone, timeout string
	require.NoError(t, db.Pool().QueryRow(t.Context(),
		`SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('statement_timeout')`).
		Scan(&app, &zone, &timeout))
	require.Equal(t, "abacus", app)
	require.Equal(t, "UTC", zone)
	require.Equal(t, "250ms", timeout)

	_, err := db.Pool().Exec(t.Context(), `SELECT pg_sleep(5)`)
	require.ErrorContains(t, err, "statement timeout")
}
