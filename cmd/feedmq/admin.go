package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
	"github.com/feedmq/feedmq/storage"
)

// adminService is every administrative operation; *auth.Service
// implements it, and so does the admin socket client.
type adminService interface {
	CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error)
	UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error)
	RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error)
	DeleteChannel(ctx context.Context, id uint64) error
	ClearChannel(ctx context.Context, id uint64) error
	Channel(ctx context.Context, id uint64) (*channels.Channel, error)
	ListChannels(ctx context.Context) ([]*channels.Channel, error)
	Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error)

	CreateDevice(ctx context.Context, name string, grants []auth.Grant) (*auth.Credentials, error)
	AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error)
	DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error)
	ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error)
	DeleteDevice(ctx context.Context, id uint64) error
	Device(ctx context.Context, id uint64) (*auth.Device, error)
	ListDevices(ctx context.Context) ([]*auth.Device, error)
}

var _ adminService = (*auth.Service)(nil)

// admin is an adminService that an admin command closes when done.
type admin interface {
	adminService
	Close() error
}

// localAdmin works directly on the database of a data directory that no
// server is running on.
type localAdmin struct {
	*auth.Service
	db *storage.DB
}

func (l *localAdmin) Close() error { return l.db.Close() }

// adminLockTimeout bounds the wait for the database lock when no server
// answers on the socket; tests shorten it.
var adminLockTimeout = 2 * time.Second

// mayCreate is the annotation of commands that may start a new database
// (the create commands); the others refuse a data directory without one,
// which is most likely a mistyped --data.
const mayCreate = "feedmq/may-create-database"

// openAdmin reaches the instance in cfg's data directory: through the admin
// socket of a running serve, or else directly on the database. create
// allows a new database.
func openAdmin(ctx context.Context, cfg Config, create bool) (admin, error) {
	if a, err := dialAdmin(cfg); a != nil || err != nil {
		return a, err
	}
	if _, err := os.Stat(cfg.dbPath()); !create && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no feedmq database in %s; give the --data directory of your instance, or create a channel to start a new one", cfg.dataDir())
	}
	db, err := storage.Open(cfg.dbPath(), storage.Options{Timeout: adminLockTimeout})
	if errors.Is(err, storage.ErrLocked) {
		// A serve may have finished starting while we waited.
		if a, err := dialAdmin(cfg); a != nil || err != nil {
			return a, err
		}
		return nil, fmt.Errorf("database %s is locked by another process, but no feedmq serve answers on %s; "+
			"wait for the other feedmq command to finish, or for serve to finish starting, and retry", cfg.dbPath(), cfg.socketPath())
	}
	if err != nil {
		return nil, err
	}
	svc, err := auth.NewService(ctx, db, db, cfg.authLimits())
	if err != nil {
		db.Close()
		return nil, err
	}
	return &localAdmin{Service: svc, db: db}, nil
}

// dialAdmin returns a remote admin when a server answers on the socket,
// and nil, nil when none does.
func dialAdmin(cfg Config) (admin, error) {
	c, err := adminsock.Dial(cfg.socketPath())
	if errors.Is(err, adminsock.ErrNoServer) {
		return nil, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w; run the command as the user that runs feedmq serve", err)
	}
	if err != nil {
		return nil, err
	}
	return &remoteAdmin{c: c}, nil
}

// withAdmin loads the configuration, opens the admin for its data
// directory, runs f and closes the admin.
func withAdmin(cmd *cobra.Command, f func(ctx context.Context, a admin) error) (err error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	a, err := openAdmin(ctx, cfg, cmd.Annotations[mayCreate] != "")
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
