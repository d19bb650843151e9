package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// A store several servers share tells each of them what the others
// changed (channels.ChangeNotifier). Apply brings this server's memory
// (the Registry, the bindings watcher, the account copy) in step with one
// such change by reading the changed records again from the store, and
// Follow feeds it every change and polls the store's configuration
// version, so that a missed notification is made good within a poll.
//
// Changes are read, never replayed from the notice: the store holds the
// latest state, so applying a change late, twice, or after this server
// made it itself leaves the same memory. Revocations compare the
// password hash the registry holds with the stored one, so a server's
// own password reset (whose connections it closed already) is not
// revoked a second time when its notice comes back.

// followState is what Apply and Follow know of the shared store.
type followState struct {
	n channels.ChangeNotifier // set by Follow
	// applied is the configuration version the memory reflects at least;
	// dirty says a change failed to apply, so that the next Confirm
	// reloads everything whatever the version.
	applied uint64
	dirty   bool
	// reloads counts full reloads (for tests and logs).
	reloads uint64
	// ownClears counts, per channel, this server's clears whose notice
	// has not come back yet (clearedHere).
	ownClears map[uint64]int
}

// Apply brings memory in step with c, a change committed to the shared
// store by any server (this one included) or an offline command. A
// ChangeResync, or a kind this binary does not know, reloads everything.
// It runs under the lock that serialises this server's own changes, so
// it never installs a state older than one a concurrent change did.
func (l *Local) Apply(ctx context.Context, c channels.Change) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	switch c.Kind {
	case channels.ChangeChannel:
		err = l.applyChannel(ctx, c.ID)
	case channels.ChangeDevice:
		err = l.applyDevice(ctx, c.ID)
	case channels.ChangeCleared:
		// Its numbering restarts: what the node knows of its IDs is void.
		// This server's own clear restarted it already, and entries may
		// have been delivered since: restarting again would deliver them
		// twice.
		if n := l.follow.ownClears[c.ID]; n > 0 {
			l.follow.ownClears[c.ID] = n - 1
			if n == 1 {
				delete(l.follow.ownClears, c.ID)
			}
		} else if l.ChannelReset != nil {
			l.ChannelReset(c.ID)
		}
	case channels.ChangeRules:
		err = l.applySharedRules(ctx)
	case channels.ChangeBindings:
		err = l.applyBindings(ctx)
	case channels.ChangeAccount:
		l.AccountChanged()
	default:
		return l.reloadAll(ctx)
	}
	if err != nil {
		l.follow.dirty = true // the next Confirm reloads everything
		return fmt.Errorf("apply %s change: %w", c.Kind, err)
	}
	l.follow.applied = max(l.follow.applied, c.Version)
	return nil
}

// applyChannel reloads channel id; l.mu is held.
func (l *Local) applyChannel(ctx context.Context, id uint64) error {
	c, err := l.Channels.FindChannel(ctx, id)
	switch {
	case channels.ErrorCode(err) == channels.ENOTFOUND:
		l.channelDeleted(id)
		return nil
	case err != nil:
		return err
	}
	l.Registry.PutChannel(c)
	return nil
}

// channelDeleted forgets channel id and its bindings and restarts its
// sequence; l.mu is held.
func (l *Local) channelDeleted(id uint64) {
	l.Registry.DeleteChannel(id)
	if slices.ContainsFunc(l.binds, func(b channels.Binding) bool { return b.ChannelID == id }) {
		l.channelGone(id)
	}
	if l.ChannelReset != nil {
		l.ChannelReset(id)
	}
}

// applyDevice reloads device id and closes its connections when its
// credentials are not those the registry held; l.mu is held.
func (l *Local) applyDevice(ctx context.Context, id uint64) error {
	d, err := l.Devices.FindDevice(ctx, id)
	switch {
	case channels.ErrorCode(err) == channels.ENOTFOUND:
		l.deviceDeleted(id)
		return nil
	case err != nil:
		return err
	}
	l.putDevice(d)
	return nil
}

// putDevice installs d, revoking the connections authenticated with
// other credentials; l.mu is held.
func (l *Local) putDevice(d *auth.Device) {
	old, had := l.Registry.Device(d.ID)
	l.Registry.PutDevice(d)
	if had && old.PasswordHash != d.PasswordHash && l.Revoke != nil {
		l.Revoke(d.ID)
	}
}

// deviceDeleted forgets device id and closes its connections, unless it
// was forgotten already (this server deleted it); l.mu is held.
func (l *Local) deviceDeleted(id uint64) {
	if _, had := l.Registry.Device(id); !had {
		return
	}
	l.Registry.DeleteDevice(id)
	if l.Revoke != nil {
		l.Revoke(id)
	}
}

// applySharedRules reloads the anonymous and everyone rule lists; l.mu
// is held.
func (l *Local) applySharedRules(ctx context.Context) error {
	anon, every, err := l.Rules.SharedRules(ctx)
	if err != nil {
		return err
	}
	l.Registry.SetAnonymousRules(anon)
	l.Registry.SetCommonRules(every)
	return nil
}

// applyBindings reloads the bindings and hands them to the watcher; l.mu
// is held.
func (l *Local) applyBindings(ctx context.Context) error {
	bs, err := l.BindingStore.Bindings(ctx)
	if err != nil {
		return err
	}
	l.bindingsChanged(func([]channels.Binding) []channels.Binding { return bs })
	if l.bindWatch == nil {
		l.binds = bs
	}
	return nil
}

// reloadAll reads every channel, device, rule list and binding again and
// makes memory match: records gone from the store are forgotten (a
// channel's sequence restarted, a device's connections closed), devices
// with other credentials are revoked. The version is read first, so the
// records read after it reflect at least that version. l.mu is held.
func (l *Local) reloadAll(ctx context.Context) error {
	err := l.reloadAllOnce(ctx)
	l.follow.dirty = err != nil
	if err != nil {
		return fmt.Errorf("reload the configuration: %w", err)
	}
	l.follow.reloads++
	return nil
}

func (l *Local) reloadAllOnce(ctx context.Context) error {
	var v uint64
	if n := l.follow.n; n != nil {
		var err error
		if v, err = n.ConfigVersion(ctx); err != nil {
			return err
		}
	}
	// Delivered IDs were committed before the store is read: a last
	// entry ID below one of them is a clear this server did not hear of.
	var delivered map[uint64]uint64
	if l.Delivered != nil {
		delivered = l.Delivered()
	}
	chs, err := l.Channels.ListChannels(ctx)
	if err != nil {
		return err
	}
	devs, err := l.Devices.ListDevices(ctx)
	if err != nil {
		return err
	}
	anon, every, err := l.Rules.SharedRules(ctx)
	if err != nil {
		return err
	}
	bs, err := l.BindingStore.Bindings(ctx)
	if err != nil {
		return err
	}
	// Everything is read: memory changes only now, all of it.
	keepCh := make(map[uint64]bool, len(chs))
	for _, c := range chs {
		keepCh[c.ID] = true
		l.Registry.PutChannel(c)
		if d, ok := delivered[c.ID]; ok && c.LastEntryID < d && l.ChannelReset != nil {
			l.ChannelReset(c.ID)
		}
	}
	for _, id := range l.Registry.ChannelIDs() {
		if !keepCh[id] {
			l.Registry.DeleteChannel(id)
			if l.ChannelReset != nil {
				l.ChannelReset(id)
			}
		}
	}
	keepDev := make(map[uint64]bool, len(devs))
	for _, d := range devs {
		keepDev[d.ID] = true
		l.putDevice(d)
	}
	for _, id := range l.Registry.DeviceIDs() {
		if !keepDev[id] {
			l.deviceDeleted(id)
		}
	}
	l.Registry.SetAnonymousRules(anon)
	l.Registry.SetCommonRules(every)
	l.bindingsChanged(func([]channels.Binding) []channels.Binding { return bs })
	if l.bindWatch == nil {
		l.binds = bs
	}
	l.AccountChanged()
	l.follow.applied = max(l.follow.applied, v)
	// Notices missed are not coming; a clear among them showed above as
	// a last entry ID below what was delivered.
	l.follow.ownClears = nil
	return nil
}

// clearedHere restarts channel id's sequence as soon as this server has
// cleared it, rather than when its notice comes back (by then entries of
// the new feed may have been delivered), and counts the notice to come
// so that Apply lets it pass; l.mu is held.
func (l *Local) clearedHere(id uint64) {
	if l.ChannelReset == nil {
		return
	}
	l.ChannelReset(id)
	if l.follow.n == nil {
		return // no notices to expect
	}
	if l.follow.ownClears == nil {
		l.follow.ownClears = make(map[uint64]int)
	}
	l.follow.ownClears[id]++
}

// Confirm checks that memory reflects the shared store's configuration
// version now, and reloads everything when it does not (a notification
// was missed, or a change failed to apply). It returns nil once memory is
// confirmed current: a cluster node that cannot confirm for long fails
// closed. Without Follow (a store one process owns) there is nothing to
// confirm.
func (l *Local) Confirm(ctx context.Context) error {
	l.mu.Lock()
	n := l.follow.n
	l.mu.Unlock()
	if n == nil {
		return nil
	}
	v, err := n.ConfigVersion(ctx)
	if err != nil {
		return fmt.Errorf("read the configuration version: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.follow.dirty && v <= l.follow.applied {
		return nil
	}
	return l.reloadAll(ctx)
}

// Reloads returns how many full reloads Apply and Confirm made.
func (l *Local) Reloads() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.follow.reloads
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// Poll is how often the configuration version is compared; default
	// DefaultFollowPoll.
	Poll   time.Duration
	Logger *slog.Logger
}

// DefaultFollowPoll is how often Follow compares configuration versions:
// the longest a missed notification stays missed while the store is
// reachable.
const DefaultFollowPoll = 2 * time.Second

// Follow keeps memory in step with the changes n announces until the
// returned stop is called: it listens for changes (Apply), compares the
// configuration version every poll (Confirm), and after a lost listening
// connection listens again and reloads everything. The first listen and
// reload happen before Follow returns, and their error is returned: a
// server starts only once it is current.
func (l *Local) Follow(ctx context.Context, n channels.ChangeNotifier, o FollowOptions) (stop func(), err error) {
	if o.Poll <= 0 {
		o.Poll = DefaultFollowPoll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l.mu.Lock()
	if l.follow.n != nil {
		l.mu.Unlock()
		return nil, errors.New("admin: Follow called twice")
	}
	l.follow.n = n
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	changes, err := n.Changes(ctx)
	if err == nil {
		// What was committed before the listen began is read now.
		err = l.Apply(ctx, channels.Change{Kind: channels.ChangeResync})
	}
	if err != nil {
		cancel()
		l.mu.Lock()
		l.follow.n = nil
		l.mu.Unlock()
		return nil, fmt.Errorf("follow configuration changes: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.follow1(ctx, n, changes, o)
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// follow1 is Follow's loop.
func (l *Local) follow1(ctx context.Context, n channels.ChangeNotifier, changes <-chan channels.Change, o FollowOptions) {
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if ok {
				if err := l.Apply(ctx, c); err != nil && ctx.Err() == nil {
					o.Logger.Warn("configuration change not applied; everything is reloaded at the next poll", "kind", c.Kind.String(), "error", err)
				}
				continue
			}
			// The listening connection is gone: listen again, then
			// read what was missed meanwhile.
			changes = nil
			for changes == nil {
				var err error
				if changes, err = n.Changes(ctx); err == nil {
					backoff = 100 * time.Millisecond
					if err := l.Apply(ctx, channels.Change{Kind: channels.ChangeResync}); err != nil && ctx.Err() == nil {
						o.Logger.Warn("configuration not reloaded after listening again", "error", err)
					}
					break
				}
				if ctx.Err() != nil {
					return
				}
				o.Logger.Warn("cannot listen for configuration changes; retrying", "error", err, "retry_in", backoff.String())
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
		case <-tick.C:
			if err := l.Confirm(ctx); err != nil && ctx.Err() == nil {
				o.Logger.Warn("configuration version not confirmed", "error", err)
			}
		}
	}
}
