package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
)

// Operation names on the admin socket. Arguments and results are the
// domain types encoded with encoding/json (Go field names), except that
// devices never carry their password hash and entries use wireEntry.
const (
	opChannelCreate     = "channel.create"        // auth.ChannelSpec -> channels.Channel
	opChannelUpdate     = "channel.update"        // updateArgs -> channels.Channel
	opChannelRegenerate = "channel.regenerate"    // regenerateArgs -> channels.Channel
	opChannelDelete     = "channel.delete"        // idArgs -> null
	opChannelClear      = "channel.clear"         // idArgs -> null
	opChannelGet        = "channel.get"           // idArgs -> channels.Channel
	opChannelList       = "channel.list"          // none -> []channels.Channel
	opFeedEntries       = "feed.entries"          // entriesArgs -> []wireEntry
	opDeviceCreate      = "device.create"         // createDeviceArgs -> auth.Credentials
	opDeviceAuthorize   = "device.authorize"      // grantArgs -> auth.Device
	opDeviceDeauthorize = "device.deauthorize"    // deauthorizeArgs -> auth.Device
	opDeviceReset       = "device.reset_password" // idArgs -> auth.Credentials
	opDeviceDelete      = "device.delete"         // idArgs -> null
	opDeviceGet         = "device.get"            // idArgs -> auth.Device
	opDeviceList        = "device.list"           // none -> []auth.Device
)

type idArgs struct {
	ID uint64 `json:"id"`
}

type updateArgs struct {
	ID     uint64             `json:"id"`
	Update auth.ChannelUpdate `json:"update"`
}

type regenerateArgs struct {
	ID    uint64 `json:"id"`
	Write bool   `json:"write"`
}

type entriesArgs struct {
	ID     uint64               `json:"id"`
	Filter channels.EntryFilter `json:"filter"`
}

type createDeviceArgs struct {
	Name   string       `json:"name"`
	Grants []auth.Grant `json:"grants"`
}

type grantArgs struct {
	ID     uint64       `json:"id"`
	Grants []auth.Grant `json:"grants"`
}

type deauthorizeArgs struct {
	ID      uint64 `json:"id"`
	Channel uint64 `json:"channel"`
}

// wireEntry is channels.Entry without its feed JSON encoding, so that it
// round-trips through encoding/json.
type wireEntry channels.Entry

// opFunc runs one operation on decoded arguments.
type opFunc func(ctx context.Context, svc adminService, args json.RawMessage) (any, error)

// op adapts a typed operation to an opFunc.
func op[A any](f func(ctx context.Context, svc adminService, a A) (any, error)) opFunc {
	return func(ctx context.Context, svc adminService, raw json.RawMessage) (any, error) {
		var a A
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, channels.Errorf(channels.EINVALID, "malformed arguments: %v", err)
			}
		}
		return f(ctx, svc, a)
	}
}

// none discards the result of an operation that only reports an error.
func none(err error) (any, error) { return nil, err }

var adminOps = map[string]opFunc{
	opChannelCreate: op(func(ctx context.Context, s adminService, a auth.ChannelSpec) (any, error) {
		return s.CreateChannel(ctx, a)
	}),
	opChannelUpdate: op(func(ctx context.Context, s adminService, a updateArgs) (any, error) {
		return s.UpdateChannel(ctx, a.ID, a.Update)
	}),
	opChannelRegenerate: op(func(ctx context.Context, s adminService, a regenerateArgs) (any, error) {
		return s.RegenerateKey(ctx, a.ID, a.Write)
	}),
	opChannelDelete: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return none(s.DeleteChannel(ctx, a.ID))
	}),
	opChannelClear: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return none(s.ClearChannel(ctx, a.ID))
	}),
	opChannelGet: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return s.Channel(ctx, a.ID)
	}),
	opChannelList: op(func(ctx context.Context, s adminService, _ struct{}) (any, error) {
		return s.ListChannels(ctx)
	}),
	opFeedEntries: op(func(ctx context.Context, s adminService, a entriesArgs) (any, error) {
		es, err := s.Entries(ctx, a.ID, a.Filter)
		out := make([]wireEntry, len(es))
		for i := range es {
			out[i] = wireEntry(es[i])
		}
		return out, err
	}),
	opDeviceCreate: op(func(ctx context.Context, s adminService, a createDeviceArgs) (any, error) {
		return scrubCredentials(s.CreateDevice(ctx, a.Name, a.Grants))
	}),
	opDeviceAuthorize: op(func(ctx context.Context, s adminService, a grantArgs) (any, error) {
		return scrubDevice(s.AuthorizeDevice(ctx, a.ID, a.Grants))
	}),
	opDeviceDeauthorize: op(func(ctx context.Context, s adminService, a deauthorizeArgs) (any, error) {
		return scrubDevice(s.DeauthorizeDevice(ctx, a.ID, a.Channel))
	}),
	opDeviceReset: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return scrubCredentials(s.ResetPassword(ctx, a.ID))
	}),
	opDeviceDelete: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return none(s.DeleteDevice(ctx, a.ID))
	}),
	opDeviceGet: op(func(ctx context.Context, s adminService, a idArgs) (any, error) {
		return scrubDevice(s.Device(ctx, a.ID))
	}),
	opDeviceList: op(func(ctx context.Context, s adminService, _ struct{}) (any, error) {
		ds, err := s.ListDevices(ctx)
		for i, d := range ds {
			ds[i] = withoutHash(d)
		}
		return ds, err
	}),
}

// withoutHash returns a copy of d without its password hash: it never
// leaves the server.
func withoutHash(d *auth.Device) *auth.Device {
	cp := *d
	cp.PasswordHash = ""
	return &cp
}

func scrubDevice(d *auth.Device, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return withoutHash(d), nil
}

func scrubCredentials(c *auth.Credentials, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return &auth.Credentials{Device: withoutHash(c.Device), Password: c.Password}, nil
}

// readOps change nothing; they are logged at debug level only.
var readOps = map[string]bool{
	opChannelGet: true, opChannelList: true, opFeedEntries: true, opDeviceGet: true, opDeviceList: true,
}

// newAdminHandler serves the admin socket with svc, the running server's
// service, so every change reaches the live registry at once. Each
// change is logged at info level (reads at debug) without its arguments
// or result, which may hold credentials.
func newAdminHandler(svc adminService, log *slog.Logger) adminsock.Handler {
	return func(ctx context.Context, name string, args json.RawMessage) (any, error) {
		f, ok := adminOps[name]
		if !ok {
			log.Warn("unknown admin operation", "op", name)
			return nil, &adminsock.Error{Code: channels.EINVALID,
				Message: "unknown admin operation " + name + "; is this feedmq command newer than the running server?"}
		}
		start := time.Now()
		result, err := f(ctx, svc, args)
		if err != nil {
			log.Info("admin operation failed", "op", name, "code", channels.ErrorCode(err), "err", err)
			return nil, &adminsock.Error{Code: channels.ErrorCode(err), Message: err.Error()}
		}
		level := slog.LevelInfo
		if readOps[name] {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "admin operation", "op", name, "duration", time.Since(start))
		return result, nil
	}
}

// remoteAdmin performs operations through the admin socket of a running
// server. Errors come back as *channels.Error with the server's code and
// message, so they read exactly as they would locally.
type remoteAdmin struct {
	c *adminsock.Client
}

var _ admin = (*remoteAdmin)(nil)

func (r *remoteAdmin) Close() error { return r.c.Close() }

// call performs op and decodes its result into a new R.
func call[R any](ctx context.Context, r *remoteAdmin, op string, args any) (R, error) {
	var out R
	err := r.c.Call(ctx, op, args, &out)
	var e *adminsock.Error
	if errors.As(err, &e) {
		return out, &channels.Error{Code: e.Code, Message: e.Message}
	}
	return out, err
}

// callPtr is call for operations answering one object.
func callPtr[R any](ctx context.Context, r *remoteAdmin, op string, args any) (*R, error) {
	out, err := call[R](ctx, r, op, args)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (r *remoteAdmin) CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelCreate, spec)
}

func (r *remoteAdmin) UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelUpdate, updateArgs{ID: id, Update: u})
}

func (r *remoteAdmin) RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelRegenerate, regenerateArgs{ID: id, Write: write})
}

func (r *remoteAdmin) DeleteChannel(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opChannelDelete, idArgs{ID: id})
	return err
}

func (r *remoteAdmin) ClearChannel(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opChannelClear, idArgs{ID: id})
	return err
}

func (r *remoteAdmin) Channel(ctx context.Context, id uint64) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelGet, idArgs{ID: id})
}

func (r *remoteAdmin) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	return call[[]*channels.Channel](ctx, r, opChannelList, nil)
}

func (r *remoteAdmin) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	ws, err := call[[]wireEntry](ctx, r, opFeedEntries, entriesArgs{ID: id, Filter: f})
	if err != nil {
		return nil, err
	}
	es := make([]channels.Entry, len(ws))
	for i := range ws {
		es[i] = channels.Entry(ws[i])
	}
	return es, nil
}

func (r *remoteAdmin) CreateDevice(ctx context.Context, name string, grants []auth.Grant) (*auth.Credentials, error) {
	return callPtr[auth.Credentials](ctx, r, opDeviceCreate, createDeviceArgs{Name: name, Grants: grants})
}

func (r *remoteAdmin) AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceAuthorize, grantArgs{ID: id, Grants: grants})
}

func (r *remoteAdmin) DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceDeauthorize, deauthorizeArgs{ID: id, Channel: ch})
}

func (r *remoteAdmin) ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error) {
	return callPtr[auth.Credentials](ctx, r, opDeviceReset, idArgs{ID: id})
}

func (r *remoteAdmin) DeleteDevice(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opDeviceDelete, idArgs{ID: id})
	return err
}

func (r *remoteAdmin) Device(ctx context.Context, id uint64) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceGet, idArgs{ID: id})
}

func (r *remoteAdmin) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	return call[[]*auth.Device](ctx, r, opDeviceList, nil)
}
