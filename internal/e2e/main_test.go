package e2e

import (
	"os"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// The PostgreSQL server of the tests that serve on it starts on first
// use, one for the whole binary.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
