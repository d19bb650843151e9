package admin

import (
	"context"
	"encoding/json"
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
	opFeedImport        = "feed.import"           // importArgs -> ImportResult
	opDeviceCreate      = "device.create"         // createDeviceArgs -> auth.Credentials
	opDeviceUpdate      = "device.update"         // deviceUpdateArgs -> auth.Device
	opDeviceAuthorize   = "device.authorize"      // grantArgs -> auth.Device
	opDeviceDeauthorize = "device.deauthorize"    // deauthorizeArgs -> auth.Device
	opDeviceReset       = "device.reset_password" // idArgs -> auth.Credentials
	opDeviceDelete      = "device.delete"         // idArgs -> null
	opDeviceGet         = "device.get"            // idArgs -> auth.Device
	opDeviceList        = "device.list"           // none -> []auth.Device
	opDeviceActivity    = "device.activity"       // none -> map[uint64]auth.Activity
	opRulesAllow        = "rules.allow"           // allowArgs -> []auth.Rule
	opRulesDisallow     = "rules.disallow"        // disallowArgs -> []auth.Rule
	opRulesList         = "rules.list"            // none -> auth.AccessRules
	opRulesImport       = "rules.import"          // importACLArgs -> ACLImportResult
	opBindingCreate     = "binding.create"        // channels.Binding -> channels.Binding
	opBindingDelete     = "binding.delete"        // idArgs -> null
	opBindingList       = "binding.list"          // bindingListArgs -> []channels.Binding
	opDBBackup          = "db.backup"             // backupArgs -> BackupResult
	opDBCheck           = "db.check"              // none -> storage.CheckReport

	opAccountGet            = "account.get"             // none -> auth.AccountInfo
	opAccountRegenerate     = "account.regenerate_key"  // none -> auth.AccountInfo
	opAccountSetPassword    = "account.set_password"    // passwordArgs -> null
	opAccountVerifyPassword = "account.verify_password" // passwordArgs -> null
	opAccountVerifyUserKey  = "account.verify_user_key" // userKeyArgs -> null
	opAccountRedeemSetup    = "account.redeem_setup"    // redeemArgs -> null
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

type importArgs struct {
	ID      uint64      `json:"id"`
	Entries []wireEntry `json:"entries"`
	KeepIDs bool        `json:"keep_ids"`
}

type createDeviceArgs struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Grants      []auth.Grant `json:"grants"`
	Rules       []auth.Rule  `json:"rules,omitempty"`
}

type allowArgs struct {
	Target auth.RuleTarget `json:"target"`
	Rules  []auth.Rule     `json:"rules"`
}

type disallowArgs struct {
	Target   auth.RuleTarget `json:"target"`
	Patterns []string        `json:"patterns"`
}

type importACLArgs struct {
	ACL     auth.ACL         `json:"acl"`
	Options ACLImportOptions `json:"options"`
}

type deviceUpdateArgs struct {
	ID     uint64            `json:"id"`
	Update auth.DeviceUpdate `json:"update"`
}

type grantArgs struct {
	ID     uint64       `json:"id"`
	Grants []auth.Grant `json:"grants"`
}

type deauthorizeArgs struct {
	ID      uint64 `json:"id"`
	Channel uint64 `json:"channel"`
}

type bindingListArgs struct {
	Channel uint64 `json:"channel"`
}

type backupArgs struct {
	Path string `json:"path"`
}

// wireEntry is channels.Entry without its feed JSON encoding, so that it
// round-trips through encoding/json.
type wireEntry channels.Entry

// opFunc runs one operation on decoded arguments.
type opFunc func(ctx context.Context, svc Service, args json.RawMessage) (any, error)

// op adapts a typed operation to an opFunc.
func op[A any](f func(ctx context.Context, svc Service, a A) (any, error)) opFunc {
	return func(ctx context.Context, svc Service, raw json.RawMessage) (any, error) {
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

var ops = map[string]opFunc{
	opChannelCreate: op(func(ctx context.Context, s Service, a auth.ChannelSpec) (any, error) {
		return s.CreateChannel(ctx, a)
	}),
	opChannelUpdate: op(func(ctx context.Context, s Service, a updateArgs) (any, error) {
		return s.UpdateChannel(ctx, a.ID, a.Update)
	}),
	opChannelRegenerate: op(func(ctx context.Context, s Service, a regenerateArgs) (any, error) {
		return s.RegenerateKey(ctx, a.ID, a.Write)
	}),
	opChannelDelete: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return none(s.DeleteChannel(ctx, a.ID))
	}),
	opChannelClear: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return none(s.ClearChannel(ctx, a.ID))
	}),
	opChannelGet: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return s.Channel(ctx, a.ID)
	}),
	opChannelList: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.ListChannels(ctx)
	}),
	opFeedEntries: op(func(ctx context.Context, s Service, a entriesArgs) (any, error) {
		es, err := s.Entries(ctx, a.ID, a.Filter)
		out := make([]wireEntry, len(es))
		for i := range es {
			out[i] = wireEntry(es[i])
		}
		return out, err
	}),
	opFeedImport: op(func(ctx context.Context, s Service, a importArgs) (any, error) {
		es := make([]channels.Entry, len(a.Entries))
		for i := range a.Entries {
			es[i] = channels.Entry(a.Entries[i])
		}
		return s.ImportEntries(ctx, a.ID, es, a.KeepIDs)
	}),
	opDeviceCreate: op(func(ctx context.Context, s Service, a createDeviceArgs) (any, error) {
		return scrubCredentials(s.CreateDevice(ctx, auth.DeviceSpec{Name: a.Name, Description: a.Description, Grants: a.Grants, Rules: a.Rules}))
	}),
	opDeviceUpdate: op(func(ctx context.Context, s Service, a deviceUpdateArgs) (any, error) {
		return scrubDevice(s.UpdateDevice(ctx, a.ID, a.Update))
	}),
	opDeviceAuthorize: op(func(ctx context.Context, s Service, a grantArgs) (any, error) {
		return scrubDevice(s.AuthorizeDevice(ctx, a.ID, a.Grants))
	}),
	opDeviceDeauthorize: op(func(ctx context.Context, s Service, a deauthorizeArgs) (any, error) {
		return scrubDevice(s.DeauthorizeDevice(ctx, a.ID, a.Channel))
	}),
	opDeviceReset: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return scrubCredentials(s.ResetPassword(ctx, a.ID))
	}),
	opDeviceDelete: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return none(s.DeleteDevice(ctx, a.ID))
	}),
	opDeviceGet: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return scrubDevice(s.Device(ctx, a.ID))
	}),
	opDeviceList: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		ds, err := s.ListDevices(ctx)
		for i, d := range ds {
			ds[i] = withoutHash(d)
		}
		return ds, err
	}),
	opDeviceActivity: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.DeviceActivity(ctx)
	}),
	opRulesAllow: op(func(ctx context.Context, s Service, a allowArgs) (any, error) {
		return s.AllowRules(ctx, a.Target, a.Rules)
	}),
	opRulesDisallow: op(func(ctx context.Context, s Service, a disallowArgs) (any, error) {
		return s.DisallowRules(ctx, a.Target, a.Patterns)
	}),
	opRulesList: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.AccessRules(ctx)
	}),
	opRulesImport: op(func(ctx context.Context, s Service, a importACLArgs) (any, error) {
		return s.ImportACL(ctx, &a.ACL, a.Options)
	}),
	opBindingCreate: op(func(ctx context.Context, s Service, a channels.Binding) (any, error) {
		return s.Bind(ctx, a)
	}),
	opBindingDelete: op(func(ctx context.Context, s Service, a idArgs) (any, error) {
		return none(s.Unbind(ctx, a.ID))
	}),
	opBindingList: op(func(ctx context.Context, s Service, a bindingListArgs) (any, error) {
		return s.Bindings(ctx, a.Channel)
	}),
	opDBBackup: op(func(ctx context.Context, s Service, a backupArgs) (any, error) {
		return s.Backup(ctx, a.Path)
	}),
	opDBCheck: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.Check(ctx)
	}),
	opAccountGet: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.Account(ctx)
	}),
	opAccountRegenerate: op(func(ctx context.Context, s Service, _ struct{}) (any, error) {
		return s.RegenerateUserKey(ctx)
	}),
	opAccountSetPassword: op(func(ctx context.Context, s Service, a passwordArgs) (any, error) {
		return none(s.SetPassword(ctx, a.Password))
	}),
	opAccountVerifyPassword: op(func(ctx context.Context, s Service, a passwordArgs) (any, error) {
		return none(s.VerifyPassword(ctx, a.Password))
	}),
	opAccountVerifyUserKey: op(func(ctx context.Context, s Service, a userKeyArgs) (any, error) {
		return none(s.VerifyUserKey(ctx, a.Key))
	}),
	opAccountRedeemSetup: op(func(ctx context.Context, s Service, a redeemArgs) (any, error) {
		return none(s.RedeemSetupToken(ctx, a.Token, a.Password))
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
	opDeviceActivity: true, opRulesList: true, opBindingList: true, opDBCheck: true, opAccountGet: true, opAccountVerifyPassword: true, opAccountVerifyUserKey: true,
}

// NewHandler serves the admin socket with svc, the running server's
// service, so every change reaches the live registry at once. Each
// change is logged at info level (reads at debug) without its arguments
// or result, which may hold credentials.
func NewHandler(svc Service, log *slog.Logger) adminsock.Handler {
	return func(ctx context.Context, name string, args json.RawMessage) (any, error) {
		f, ok := ops[name]
		if !ok {
			log.Warn("unknown admin operation", "op", name)
			return nil, &adminsock.Error{Code: channels.EINVALID,
				Message: "unknown admin operation " + name + "; is this feedmq command newer than the running server?"}
		}
		start := time.Now()
		result, err := f(ctx, svc, args)
		if err != nil {
			log.Info("admin operation failed", "op", name, "code", channels.ErrorCode(err), "err", err)
			return nil, toWire(err)
		}
		level := slog.LevelInfo
		if readOps[name] {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "admin operation", "op", name, "duration", time.Since(start))
		return result, nil
	}
}

// ErrRunning is returned (wrapped) by Listen when a server already
// answers on the data directory's socket.
var ErrRunning = adminsock.ErrRunning

// Server is a listening admin socket; Close stops it.
type Server = adminsock.Server

// Listen serves svc on the admin socket of dataDir (permission 0600, a
// stale socket file replaced) until the returned server is closed.
func Listen(dataDir string, svc Service, log *slog.Logger) (*Server, error) {
	return adminsock.Listen(SocketPath(dataDir), NewHandler(svc, log))
}
