package broker_test

import (
	"os"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// One PostgreSQL server for the tests of this package that need one,
// started by the first of them.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
