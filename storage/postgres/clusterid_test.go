package postgres

import (
	"context"
	"testing"

	"github.com/feedmq/feedmq/internal/pgtest"
)

// Every connection to one database gets one cluster ID, which names
// neither the database nor its server; another database gets another.
func TestClusterID(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	a, b := openTest(t, url, Options{}), openTest(t, url, Options{})
	other := openTest(t, pgtest.New(t), Options{})
	ida, err := a.ClusterID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idb, err := b.ClusterID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ido, err := other.ClusterID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ida != idb || len(ida) != 24 {
		t.Errorf("one database, IDs %q and %q", ida, idb)
	}
	if ido == ida {
		t.Errorf("two databases share the cluster ID %q", ida)
	}
}
