package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
)

// adminLockTimeout bounds the wait for the database lock when no server
// answers on the socket; tests shorten it.
var adminLockTimeout = 2 * time.Second

// mayCreate is the annotation of commands that may start a new database
// (the create commands); the others refuse a data directory without one,
// which is most likely a mistyped --data.
const mayCreate = "feedmq/may-create-database"

// openAdmin reaches the instance in cfg's data directory (admin.Open) and
// explains in the CLI's terms why it cannot. noDB is what to suggest when
// the directory has no database.
func openAdmin(ctx context.Context, cfg Config, o admin.Options, noDB string) (admin.Conn, error) {
	o.LockTimeout, o.Limits = adminLockTimeout, cfg.authLimits()
	o.Storage, o.StoragePassword = cfg.Storage, cfg.storagePassword
	a, err := admin.Open(ctx, cfg.dataDir(), o)
	switch {
	case errors.Is(err, admin.ErrNoDatabase):
		return nil, fmt.Errorf("no feedmq database in %s; %s", cfg.dataDir(), noDB)
	case errors.Is(err, admin.ErrLocked):
		return nil, fmt.Errorf("database %s is locked by another process, but no feedmq serve answers on %s; "+
			"wait for the other feedmq command to finish, or for serve to finish starting, and retry", cfg.dbPath(), cfg.socketPath())
	}
	return a, err
}

// withAdmin loads the configuration, opens the admin service for its data
// directory, runs f and closes the service.
func withAdmin(cmd *cobra.Command, f func(ctx context.Context, a admin.Service) error) error {
	return withAdminOptions(cmd, admin.Options{Create: cmd.Annotations[mayCreate] != ""},
		"give the --data directory of your instance, or create a channel to start a new one", f)
}

// withAdminOptions is withAdmin with explicit options and advice for a
// data directory without a database.
func withAdminOptions(cmd *cobra.Command, o admin.Options, noDB string, f func(ctx context.Context, a admin.Service) error) (err error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	a, err := openAdmin(ctx, cfg, o, noDB)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := a.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return f(ctx, a)
}
