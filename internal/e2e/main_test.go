package e2e

import (
	"os"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// The cluster tests share one PostgreSQL server per test binary, started
// by the first that needs it.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
