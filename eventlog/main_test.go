package eventlog_test

import (
	"testing"

	"github.com/abacus-analytics/abacus/internal/devstack/devstacktest"
)

func TestMain(m *testing.M) {
	devstacktest.Main(m)
}
