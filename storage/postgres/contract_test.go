package postgres

import (
	"time"

	"testing"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
	"github.com/feedmq/feedmq/internal/storetest"
	"github.com/feedmq/feedmq/storage"
)

// The PostgreSQL store passes the conformance suite every store passes,
// a database per subtest.
func TestStoreSuite(t *testing.T) {
	storetest.Run(t, storetest.Suite{
		Open: func(t *testing.T, now func() time.Time) storetest.Store {
			return openTest(t, pgtest.New(t), Options{Now: now})
		},
		MaxBatch:          MaxBatchEntries,
		MaxKeys:           MaxKeyLimit,
		MaxImportedID:     storage.MaxImportedID,
		EnforcesRateLimit: true,
		TextOnly:          true,
		Resolution:        time.Microsecond,
		MaxEntriesCap:     1<<63 - 1,
	})
}

// The PostgreSQL store keeps the append contract through two DBs on one
// database, as two feedmq processes sharing it.
func TestAppendContract(t *testing.T) {
	url := pgtest.New(t)
	a, b := openTest(t, url, Options{}), openTest(t, url, Options{})
	ch := addChannel(t, a, 0, 0, 0)
	storetest.CheckAppendContract(t, []channels.Store{a, b}, ch, ch+1)
}
