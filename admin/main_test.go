package admin_test

import (
	"os"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// The tests over PostgreSQL share one server per test binary, started by
// the first that needs it.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
