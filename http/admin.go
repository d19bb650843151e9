package httpd

import (
	"context"
	"io"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Admin is the part of feedmq's admin service that the channel API and
// the web console front. cmd/feedmq passes the admin package's Local,
// the same service the CLI reaches through the socket, so every front
// applies the same rules; declaring it here keeps this package free of
// the database.
type Admin interface {
	CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error)
	UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error)
	RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error)
	DeleteChannel(ctx context.Context, id uint64) error
	ClearChannel(ctx context.Context, id uint64) error
	Channel(ctx context.Context, id uint64) (*channels.Channel, error)
	ListChannels(ctx context.Context) ([]*channels.Channel, error)
	// ImportCSV streams a ThingSpeak CSV export into a channel by the
	// CLI's import rules: into a channel that never had an entry the
	// entry_ids are kept, else entries are numbered on after its last.
	// A refusal is a *channels.ImportError naming the line and saying
	// what was stored before it.
	ImportCSV(ctx context.Context, id uint64, in io.Reader) (*channels.ImportSummary, error)

	CreateDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error)
	UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error)
	AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error)
	DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error)
	ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error)
	DeleteDevice(ctx context.Context, id uint64) error
	Device(ctx context.Context, id uint64) (*auth.Device, error)
	ListDevices(ctx context.Context) ([]*auth.Device, error)
	DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error)

	Account(ctx context.Context) (*auth.AccountInfo, error)
	SetPassword(ctx context.Context, password string) error
	VerifyPassword(ctx context.Context, password string) error
	VerifyUserKey(ctx context.Context, key string) error
	RedeemSetupToken(ctx context.Context, token, password string) error
}
