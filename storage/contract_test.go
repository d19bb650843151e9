package storage_test

import (
	"testing"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
)

// The bbolt store keeps the append contract every store keeps: it is its
// only view, as one process owns the file.
func TestAppendContract(t *testing.T) {
	db := MustOpenDB(t)
	c := MustCreateChannel(t, db, "contract")
	storetest.CheckAppendContract(t, []channels.Store{db}, c.ID, c.ID+1)
}
