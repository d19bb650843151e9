// Package dbcopy copies everything a feedmq database holds into another
// one, whichever engine each uses (a bbolt file or PostgreSQL): channels
// with their feeds, devices with their grants and rules, bindings, the
// owner account and the shared access rules. Every ID is kept (channel,
// device, binding and entry IDs) and so are the creation times, so that
// URLs, topics, API keys and credentials go on working after a move.
//
// The package knows no engine: it works through the Source and
// Destination interfaces, which storage.DB and postgres.DB implement.
package dbcopy

import (
	"context"
	"errors"
	"fmt"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Counters are the highest IDs a database ever handed out, deleted ones
// included. A copy carries them over so that the destination does not
// reuse the ID of something deleted before the copy.
type Counters struct {
	Channels uint64 `json:"channels"`
	Devices  uint64 `json:"devices"`
	Bindings uint64 `json:"bindings"`
}

// Source is a database copied from.
type Source interface {
	ListChannels(ctx context.Context) ([]*channels.Channel, error)
	ListDevices(ctx context.Context) ([]*auth.Device, error)
	Bindings(ctx context.Context) ([]channels.Binding, error)
	Account(ctx context.Context) (*auth.Account, error)
	SharedRules(ctx context.Context) (anonymous, everyone []auth.Rule, err error)
	// EntriesAfter returns up to n entries of a channel with IDs above
	// afterID, lowest ID first. ENOTFOUND for a missing channel.
	EntriesAfter(ctx context.Context, channelID, afterID uint64, n int) ([]channels.Entry, error)
	// IDCounters returns the highest IDs handed out so far.
	IDCounters(ctx context.Context) (Counters, error)
}

// Destination is a database copied into: a Source (its contents are
// looked at before the copy) that can also store things under the IDs
// they already have.
type Destination interface {
	Source
	// LoadChannel stores c under c.ID with its CreatedAt and UpdatedAt
	// and an empty feed whose last entry_id is 0. ECONFLICT when the ID
	// is taken.
	LoadChannel(ctx context.Context, c *channels.Channel) error
	// LoadEntries stores entries of one channel under their own IDs,
	// which must rise and lie above the channel's last entry_id; that
	// becomes the highest. CreatedAt is kept, in any order. All or none.
	LoadEntries(ctx context.Context, channelID uint64, es []channels.Entry) error
	// RaiseLastEntryID sets the channel's last entry_id to id when it is
	// lower (retention may have deleted the newest entries of a feed
	// whose appends must go on numbering after them).
	RaiseLastEntryID(ctx context.Context, channelID, id uint64) error
	// LoadDevice stores d under d.ID with its times, grants and rules.
	// ECONFLICT when the ID or username is taken, ENOTFOUND when a grant
	// names a missing channel.
	LoadDevice(ctx context.Context, d *auth.Device) error
	// LoadBinding stores b under b.ID with its Created time. ECONFLICT
	// when the ID is taken, ENOTFOUND for a missing channel.
	LoadBinding(ctx context.Context, b *channels.Binding) error
	// RaiseIDCounters raises the highest IDs handed out to c where lower.
	RaiseIDCounters(ctx context.Context, c Counters) error

	PutAccount(ctx context.Context, a *auth.Account) error
	SetRules(ctx context.Context, change auth.RulesChange) ([]*auth.Device, error)
	DeleteChannel(ctx context.Context, id uint64) error
	DeleteDevice(ctx context.Context, id uint64) error
	DeleteBinding(ctx context.Context, id uint64) error
}

// Options tune Copy.
type Options struct {
	// Replace deletes everything the destination holds before the copy;
	// without it a destination that holds anything is refused.
	Replace bool
	// BatchSize is how many entries are read and stored at a time;
	// default 1000.
	BatchSize int
	// Progress, when set, is called after each channel is copied.
	Progress func(c *channels.Channel, entries uint64)
}

// Result counts what was copied.
type Result struct {
	Channels int    `json:"channels"`
	Devices  int    `json:"devices"`
	Bindings int    `json:"bindings"`
	Entries  uint64 `json:"entries"`
	Account  bool   `json:"account"`
	Rules    int    `json:"shared_rules"`
}

// ErrNotEmpty is returned by Copy for a destination that holds data
// while Options.Replace is not set.
var ErrNotEmpty = errors.New("the destination database is not empty")

// Copy copies everything src holds into dst. Writers to src should be
// stopped: the copy reads src piece by piece, not from one snapshot.
// When it fails midway dst holds part of src; copy again with Replace.
func Copy(ctx context.Context, src Source, dst Destination, opts Options) (*Result, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if err := prepare(ctx, dst, opts.Replace); err != nil {
		return nil, err
	}
	res := &Result{}
	list, err := src.ListChannels(ctx)
	if err != nil {
		return nil, fmt.Errorf("read channels: %w", err)
	}
	for _, c := range list {
		n, err := copyChannel(ctx, src, dst, c, opts.BatchSize)
		if err != nil {
			return res, err
		}
		res.Channels++
		res.Entries += n
		if opts.Progress != nil {
			opts.Progress(c, n)
		}
	}
	devices, err := src.ListDevices(ctx)
	if err != nil {
		return res, fmt.Errorf("read devices: %w", err)
	}
	for _, d := range devices {
		if err := dst.LoadDevice(ctx, d); err != nil {
			return res, fmt.Errorf("copy device %d: %w", d.ID, err)
		}
		res.Devices++
	}
	bindings, err := src.Bindings(ctx)
	if err != nil {
		return res, fmt.Errorf("read bindings: %w", err)
	}
	for i := range bindings {
		if err := dst.LoadBinding(ctx, &bindings[i]); err != nil {
			return res, fmt.Errorf("copy binding %d: %w", bindings[i].ID, err)
		}
		res.Bindings++
	}
	a, err := src.Account(ctx)
	if err != nil {
		return res, fmt.Errorf("read account: %w", err)
	}
	if *a != (auth.Account{}) {
		if err := dst.PutAccount(ctx, a); err != nil {
			return res, fmt.Errorf("copy account: %w", err)
		}
		res.Account = true
	}
	anon, every, err := src.SharedRules(ctx)
	if err != nil {
		return res, fmt.Errorf("read access rules: %w", err)
	}
	if len(anon)+len(every) > 0 {
		if _, err := dst.SetRules(ctx, auth.RulesChange{Anonymous: &anon, Everyone: &every}); err != nil {
			return res, fmt.Errorf("copy access rules: %w", err)
		}
		res.Rules = len(anon) + len(every)
	}
	last, err := src.IDCounters(ctx)
	if err != nil {
		return res, fmt.Errorf("read ID counters: %w", err)
	}
	if err := dst.RaiseIDCounters(ctx, last); err != nil {
		return res, fmt.Errorf("copy ID counters: %w", err)
	}
	return res, nil
}

// copyChannel copies one channel and its feed a batch at a time.
func copyChannel(ctx context.Context, src Source, dst Destination, c *channels.Channel, batch int) (uint64, error) {
	if err := dst.LoadChannel(ctx, c); err != nil {
		return 0, fmt.Errorf("copy channel %d: %w", c.ID, err)
	}
	var n, after uint64
	for {
		es, err := src.EntriesAfter(ctx, c.ID, after, batch)
		if err != nil {
			return n, fmt.Errorf("read entries of channel %d after %d: %w", c.ID, after, err)
		}
		if len(es) == 0 {
			break
		}
		if err := dst.LoadEntries(ctx, c.ID, es); err != nil {
			return n, fmt.Errorf("copy entries of channel %d from %d: %w", c.ID, es[0].ID, err)
		}
		n += uint64(len(es))
		after = es[len(es)-1].ID
		if len(es) < batch {
			break
		}
	}
	if err := dst.RaiseLastEntryID(ctx, c.ID, max(c.LastEntryID, after)); err != nil {
		return n, fmt.Errorf("copy last entry_id of channel %d: %w", c.ID, err)
	}
	return n, nil
}

// prepare refuses a destination holding data, or with replace empties it.
func prepare(ctx context.Context, dst Destination, replace bool) error {
	chans, err := dst.ListChannels(ctx)
	if err != nil {
		return fmt.Errorf("read the destination: %w", err)
	}
	devices, err := dst.ListDevices(ctx)
	if err != nil {
		return fmt.Errorf("read the destination: %w", err)
	}
	bindings, err := dst.Bindings(ctx)
	if err != nil {
		return fmt.Errorf("read the destination: %w", err)
	}
	anon, every, err := dst.SharedRules(ctx)
	if err != nil {
		return fmt.Errorf("read the destination: %w", err)
	}
	if len(chans)+len(devices)+len(bindings)+len(anon)+len(every) == 0 {
		// An account alone is what a fresh instance makes for itself:
		// the copy replaces it.
		return nil
	}
	if !replace {
		return fmt.Errorf("%w (%d channels, %d devices, %d bindings, %d shared access rules)",
			ErrNotEmpty, len(chans), len(devices), len(bindings), len(anon)+len(every))
	}
	for _, b := range bindings {
		if err := dst.DeleteBinding(ctx, b.ID); err != nil {
			return fmt.Errorf("empty the destination: %w", err)
		}
	}
	for _, d := range devices {
		if err := dst.DeleteDevice(ctx, d.ID); err != nil {
			return fmt.Errorf("empty the destination: %w", err)
		}
	}
	for _, c := range chans {
		if err := dst.DeleteChannel(ctx, c.ID); err != nil {
			return fmt.Errorf("empty the destination: %w", err)
		}
	}
	none := []auth.Rule{}
	if _, err := dst.SetRules(ctx, auth.RulesChange{Anonymous: &none, Everyone: &none}); err != nil {
		return fmt.Errorf("empty the destination: %w", err)
	}
	return nil
}
