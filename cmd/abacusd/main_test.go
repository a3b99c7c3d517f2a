package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunRefusesBadConfigurationListingEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ABACUS_ROLES": "ingest,nope", "ABACUS_GRPC_ADDR": "x", "ABACUS_ADMIN_TOKEN": "short"}
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve"}, func(k string) string { return env[k] }, &stdout, &stderr)
	require.Equal(t, 2, code)
	for _, want := range []string{`unknown role "nope"`, "grpc addr", "database URL is required", "redis URL is required", "kafka brokers are required"} {
		require.Contains(t, stderr.String(), want)
	}
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run(nil, func(string) string { return "" }, &stdout, &stderr))
	require.Contains(t, stderr.String(), "abacusd serve")
	stderr.Reset()
	require.Equal(t, 2, run([]string{"frobnicate"}, func(string) string { return "" }, &stdout, &stderr))
	require.Contains(t, stderr.String(), `unknown command "frobnicate"`)
	stderr.Reset()
	require.Equal(t, 0, run([]string{"serve", "-h"}, func(string) string { return "" }, &stdout, &stderr))
	require.Contains(t, stderr.String(), "ABACUS_DATABASE_URL")
}
