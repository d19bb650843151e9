package admin

import (
	"context"
	"fmt"
	"slices"

	"github.com/feedmq/feedmq/channels"
)

// Bind creates a binding after checking it (channels.Binding.Validate),
// that its channel exists and has every bound field enabled, that the
// channel has no binding on the same topic filter yet, and the limits.
// ID and Created are assigned. A running broker applies it at once
// (WatchBindings).
func (l *Local) Bind(ctx context.Context, b channels.Binding) (*channels.Binding, error) {
	b.ID = 0
	if err := b.Validate(); err != nil {
		return nil, err
	}
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		if err := l.bind(ctx, &b); err != nil {
			return nil, err
		}
		return func() {
			l.bindingsChanged(func(bs []channels.Binding) []channels.Binding { return append(bs, b) })
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// bind checks b against its channel, the other bindings and the limits,
// and stores it.
func (l *Local) bind(ctx context.Context, b *channels.Binding) error {
	c, err := l.Channels.FindChannel(ctx, b.ChannelID)
	if err != nil {
		return err
	}
	for n, p := range b.Fields {
		if p != "" && !c.FieldEnabled(n+1) {
			return channels.Errorf(channels.EINVALID, "field%d is not enabled on channel %d: enable it first (feedmq channel update %d --field %d=LABEL)", n+1, c.ID, c.ID, n+1)
		}
	}
	all, err := l.BindingStore.Bindings(ctx)
	if err != nil {
		return err
	}
	onChannel := 0
	for _, o := range all {
		if o.ChannelID != b.ChannelID {
			continue
		}
		onChannel++
		if o.Topic == b.Topic {
			return channels.Errorf(channels.ECONFLICT, "channel %d already has binding %d on this topic: unbind it first (feedmq channel unbind %d)", c.ID, o.ID, o.ID)
		}
	}
	if m := l.Limits.MaxBindingsPerChannel; m > 0 && onChannel >= m {
		return channels.Errorf(channels.ELIMIT, "channel %d has %d bindings, the most allowed (limits.max_bindings_per_channel)", c.ID, m)
	}
	if m := l.Limits.MaxBindings; m > 0 && len(all) >= m {
		return channels.Errorf(channels.ELIMIT, "binding limit reached (%d bindings); unbind one or raise limits.max_bindings", m)
	}
	return l.BindingStore.CreateBinding(ctx, b)
}

// Unbind deletes binding id; publishes on its topic stop feeding its
// channel at once.
func (l *Local) Unbind(ctx context.Context, id uint64) error {
	return l.change(ctx, func(ctx context.Context) (func(), error) {
		if err := l.BindingStore.DeleteBinding(ctx, id); err != nil {
			return nil, err
		}
		return func() {
			l.bindingsChanged(func(bs []channels.Binding) []channels.Binding {
				return slices.DeleteFunc(bs, func(b channels.Binding) bool { return b.ID == id })
			})
		}, nil
	})
}

// Bindings returns the bindings of channel ch in ID order, or every
// binding when ch is 0. A channel that does not exist is ENOTFOUND.
func (l *Local) Bindings(ctx context.Context, ch uint64) ([]channels.Binding, error) {
	if ch != 0 {
		if _, err := l.Channels.FindChannel(ctx, ch); err != nil {
			return nil, err
		}
	}
	all, err := l.BindingStore.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	if ch == 0 {
		return all, nil
	}
	return slices.DeleteFunc(all, func(b channels.Binding) bool { return b.ChannelID != ch }), nil
}

// WatchBindings makes f receive every binding now and the whole list
// again after each change (Bind, Unbind, DeleteChannel), under the lock
// that serialises changes, so f sees them in order. A broker sets it to
// keep its index of bound topics. f must not call back into l, and owns
// the slice it gets.
func (l *Local) WatchBindings(ctx context.Context, f func([]channels.Binding)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	bs, err := l.BindingStore.Bindings(ctx)
	if err != nil {
		return fmt.Errorf("load bindings: %w", err)
	}
	l.binds, l.bindWatch = bs, f
	f(slices.Clone(bs))
	return nil
}

// bindingsChanged applies change to the watched list and hands the new
// list to the watcher; the caller holds l.mu.
func (l *Local) bindingsChanged(change func([]channels.Binding) []channels.Binding) {
	if l.bindWatch == nil {
		return
	}
	l.binds = change(l.binds)
	l.bindWatch(slices.Clone(l.binds))
}

// channelGone drops the bindings of a deleted channel from the watched
// list (the store deleted them with the channel); the caller holds l.mu.
func (l *Local) channelGone(id uint64) {
	l.bindingsChanged(func(bs []channels.Binding) []channels.Binding {
		return slices.DeleteFunc(bs, func(b channels.Binding) bool { return b.ChannelID == id })
	})
}
