package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
	"github.com/feedmq/feedmq/storage"
)

// ErrNoServer is returned (wrapped) by Dial when no server answers on the
// data directory's socket.
var ErrNoServer = adminsock.ErrNoServer

// Client performs operations through the admin socket of a running
// server. Errors come back as *channels.Error with the server's code and
// message, so they read exactly as they would locally.
type Client struct {
	c *adminsock.Client
}

var _ Conn = (*Client)(nil)

// Dial connects to the server running on dataDir. The error wraps
// ErrNoServer when none answers.
func Dial(dataDir string) (*Client, error) {
	c, err := adminsock.Dial(SocketPath(dataDir))
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w; run the command as the user that runs feedmq serve", err)
	}
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Close closes the connection.
func (r *Client) Close() error { return r.c.Close() }

// call performs op and decodes its result into a new R.
func call[R any](ctx context.Context, r *Client, op string, args any) (R, error) {
	var out R
	err := r.c.Call(ctx, op, args, &out)
	return out, fromWire(err)
}

// callPtr is call for operations answering one object.
func callPtr[R any](ctx context.Context, r *Client, op string, args any) (*R, error) {
	out, err := call[R](ctx, r, op, args)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (r *Client) CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelCreate, spec)
}

func (r *Client) UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error) {
	if u.Tags != nil && *u.Tags == nil {
		// A nil list encodes as null, which decodes as "leave the tags".
		u.Tags = &[]string{}
	}
	return callPtr[channels.Channel](ctx, r, opChannelUpdate, updateArgs{ID: id, Update: u})
}

func (r *Client) RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelRegenerate, regenerateArgs{ID: id, Write: write})
}

func (r *Client) DeleteChannel(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opChannelDelete, idArgs{ID: id})
	return err
}

func (r *Client) ClearChannel(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opChannelClear, idArgs{ID: id})
	return err
}

func (r *Client) Channel(ctx context.Context, id uint64) (*channels.Channel, error) {
	return callPtr[channels.Channel](ctx, r, opChannelGet, idArgs{ID: id})
}

func (r *Client) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	return call[[]*channels.Channel](ctx, r, opChannelList, nil)
}

func (r *Client) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
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

func (r *Client) ImportEntries(ctx context.Context, id uint64, es []channels.Entry, keepIDs bool) (*ImportResult, error) {
	ws := make([]wireEntry, len(es))
	for i := range es {
		ws[i] = wireEntry(es[i])
	}
	res, err := callPtr[ImportResult](ctx, r, opFeedImport, importArgs{ID: id, Entries: ws, KeepIDs: keepIDs})
	if err == nil && !keepIDs && res.Entries == len(es) {
		// Appended entries are numbered consecutively.
		for i := range es {
			es[i].ID = res.FirstID + uint64(i)
		}
	}
	return res, err
}

func (r *Client) CreateDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error) {
	return callPtr[auth.Credentials](ctx, r, opDeviceCreate, createDeviceArgs{Name: spec.Name, Description: spec.Description, Grants: spec.Grants, Rules: spec.Rules})
}

func (r *Client) UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error) {
	if u.Grants != nil && *u.Grants == nil {
		// A nil list encodes as null, which decodes as "leave the grants".
		u.Grants = &[]auth.Grant{}
	}
	if u.Rules != nil && *u.Rules == nil {
		u.Rules = &[]auth.Rule{} // as for the grants
	}
	return callPtr[auth.Device](ctx, r, opDeviceUpdate, deviceUpdateArgs{ID: id, Update: u})
}

func (r *Client) AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceAuthorize, grantArgs{ID: id, Grants: grants})
}

func (r *Client) DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceDeauthorize, deauthorizeArgs{ID: id, Channel: ch})
}

func (r *Client) ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error) {
	return callPtr[auth.Credentials](ctx, r, opDeviceReset, idArgs{ID: id})
}

func (r *Client) DeleteDevice(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opDeviceDelete, idArgs{ID: id})
	return err
}

func (r *Client) Device(ctx context.Context, id uint64) (*auth.Device, error) {
	return callPtr[auth.Device](ctx, r, opDeviceGet, idArgs{ID: id})
}

func (r *Client) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	return call[[]*auth.Device](ctx, r, opDeviceList, nil)
}

func (r *Client) Bind(ctx context.Context, b channels.Binding) (*channels.Binding, error) {
	return callPtr[channels.Binding](ctx, r, opBindingCreate, b)
}

func (r *Client) Unbind(ctx context.Context, id uint64) error {
	_, err := call[struct{}](ctx, r, opBindingDelete, idArgs{ID: id})
	return err
}

func (r *Client) Bindings(ctx context.Context, channel uint64) ([]channels.Binding, error) {
	return call[[]channels.Binding](ctx, r, opBindingList, bindingListArgs{Channel: channel})
}

func (r *Client) Backup(ctx context.Context, path string) (*BackupResult, error) {
	return callPtr[BackupResult](ctx, r, opDBBackup, backupArgs{Path: path})
}

func (r *Client) Check(ctx context.Context) (*storage.CheckReport, error) {
	return callPtr[storage.CheckReport](ctx, r, opDBCheck, nil)
}

func (r *Client) AllowRules(ctx context.Context, target auth.RuleTarget, rules []auth.Rule) ([]auth.Rule, error) {
	return call[[]auth.Rule](ctx, r, opRulesAllow, allowArgs{Target: target, Rules: rules})
}

func (r *Client) DisallowRules(ctx context.Context, target auth.RuleTarget, patterns []string) ([]auth.Rule, error) {
	return call[[]auth.Rule](ctx, r, opRulesDisallow, disallowArgs{Target: target, Patterns: patterns})
}

func (r *Client) AccessRules(ctx context.Context) (*auth.AccessRules, error) {
	return callPtr[auth.AccessRules](ctx, r, opRulesList, nil)
}

func (r *Client) ImportACL(ctx context.Context, acl *auth.ACL, o ACLImportOptions) (*ACLImportResult, error) {
	if acl == nil {
		acl = &auth.ACL{}
	}
	return callPtr[ACLImportResult](ctx, r, opRulesImport, importACLArgs{ACL: *acl, Options: o})
}
