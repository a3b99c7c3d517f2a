package devstacktest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDatabaseName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		testName string
		seq      int64
		want     string
	}{
		{testName: "TestIngest", seq: 1, want: "t_testingest_1"},
		{testName: "TestQuery/group by=country", seq: 12, want: "t_testquery_group_by_country_12"},
		{testName: strings.Repeat("X", 100), seq: 7, want: "t_" + strings.Repeat("x", 59) + "_7"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got := databaseName(tt.testName, tt.seq)
			require.Equal(t, tt.want, got)
			require.LessOrEqual(t, len(got), 63)
		})
	}
}

func TestIndexPool(t *testing.T) {
	t.Parallel()
	var p indexPool
	first, ok := p.take()
	require.True(t, ok)
	require.Equal(t, redisFirstDB, first)
	second, _ := p.take()
	require.Equal(t, redisFirstDB+1, second)
	p.put(first)
	again, _ := p.take()
	require.Equal(t, first, again, "returned indexes are reused")
	for range redisLastDB - second {
		_, ok = p.take()
		require.True(t, ok)
	}
	_, ok = p.take()
	require.False(t, ok, "index %d is the last", redisLastDB)
}
