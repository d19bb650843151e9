package admin

import (
	"context"
	"path/filepath"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// Local performs the operations on an open database. Changes go through
// the auth.Service, so its Registry (which a broker reads) and its Revoke
// hook (which closes live connections) see them at once.
type Local struct {
	*auth.Service
	db *storage.DB
	// Activity, when set, returns the running broker's view of the
	// devices (DeviceActivity); serve sets it.
	Activity func() map[uint64]auth.Activity
}

var _ Service = (*Local)(nil)

// NewLocal returns a Local over svc, whose stores are db.
func NewLocal(svc *auth.Service, db *storage.DB) *Local {
	return &Local{Service: svc, db: db}
}

// Backup writes a consistent copy of the database from a read
// transaction, so writers go on meanwhile.
func (l *Local) Backup(ctx context.Context, path string) (*BackupResult, error) {
	if !filepath.IsAbs(path) {
		return nil, channels.Errorf(channels.EINVALID, "backup path %q is not absolute", path)
	}
	n, st, err := l.db.BackupFile(ctx, path)
	if err != nil {
		return nil, err
	}
	return &BackupResult{File: path, Bytes: n, Stats: st}, nil
}

// Check checks the database in a read transaction.
func (l *Local) Check(ctx context.Context) (*storage.CheckReport, error) {
	return l.db.Check(ctx)
}

// ownedLocal is a Local that Open opened and that closes its database.
type ownedLocal struct{ *Local }

func (o ownedLocal) Close() error { return o.db.Close() }
