package admin

import (
	"context"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// CreateChannel creates a channel with fresh API keys.
func (l *Local) CreateChannel(ctx context.Context, spec auth.ChannelSpec) (*channels.Channel, error) {
	var c *channels.Channel
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		c = l.newChannel(spec)
		if err := l.Channels.CreateChannel(ctx, c); err != nil {
			return nil, err
		}
		return func() { l.Registry.PutChannel(c) }, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// newChannel is the channel spec asks for, with fresh API keys.
func (l *Local) newChannel(spec auth.ChannelSpec) *channels.Channel {
	c := &channels.Channel{
		Name: spec.Name, Description: spec.Description, Public: spec.Public,
		Fields: spec.Fields, WriteKey: auth.NewAPIKey(), ReadKey: auth.NewAPIKey(),
		MaxEntries: spec.MaxEntries, MaxAge: spec.MaxAge, RateLimit: spec.RateLimit,
		Latitude: trim(spec.Latitude), Longitude: trim(spec.Longitude), Elevation: trim(spec.Elevation),
		Metadata: spec.Metadata, Tags: channels.NormalizeTags(spec.Tags), URL: trim(spec.URL),
	}
	if c.Fields == ([channels.NumFields]string{}) {
		c.Fields = channels.DefaultFields()
	}
	return c
}

// trim removes the spaces a user may type around a coordinate or a URL.
func trim(s string) string { return strings.TrimSpace(s) }

// setTrimmed sets *dst to the trimmed *v when v is not nil.
func setTrimmed(dst *string, v *string) {
	if v != nil {
		*dst = trim(*v)
	}
}

// UpdateChannel applies u to channel id.
func (l *Local) UpdateChannel(ctx context.Context, id uint64, u auth.ChannelUpdate) (*channels.Channel, error) {
	return l.changeChannel(ctx, id, func(c *channels.Channel) error {
		if u.Name != nil {
			c.Name = *u.Name
		}
		if u.Description != nil {
			c.Description = *u.Description
		}
		for n, label := range u.Fields {
			if n < 1 || n > channels.NumFields {
				return channels.Errorf(channels.EINVALID, "field number %d is out of range 1..%d", n, channels.NumFields)
			}
			c.Fields[n-1] = label
		}
		if u.Public != nil {
			c.Public = *u.Public
		}
		if u.MaxEntries != nil {
			c.MaxEntries = *u.MaxEntries
		}
		if u.MaxAge != nil {
			c.MaxAge = *u.MaxAge
		}
		if u.RateLimit != nil {
			c.RateLimit = *u.RateLimit
		}
		setTrimmed(&c.Latitude, u.Latitude)
		setTrimmed(&c.Longitude, u.Longitude)
		setTrimmed(&c.Elevation, u.Elevation)
		setTrimmed(&c.URL, u.URL)
		if u.Metadata != nil {
			c.Metadata = *u.Metadata
		}
		if u.Tags != nil {
			c.Tags = channels.NormalizeTags(*u.Tags)
		}
		return nil
	})
}

// RegenerateKey replaces the channel's write key (write true) or read key.
// The old key stops working at once.
func (l *Local) RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error) {
	return l.changeChannel(ctx, id, func(c *channels.Channel) error {
		if write {
			c.WriteKey = auth.NewAPIKey()
		} else {
			c.ReadKey = auth.NewAPIKey()
		}
		return nil
	})
}

func (l *Local) changeChannel(ctx context.Context, id uint64, change func(*channels.Channel) error) (*channels.Channel, error) {
	var c *channels.Channel
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		var err error
		if c, err = l.Channels.FindChannel(ctx, id); err != nil {
			return nil, err
		}
		if err := change(c); err != nil {
			return nil, err
		}
		if err := l.Channels.UpdateChannel(ctx, c); err != nil {
			return nil, err
		}
		return func() { l.Registry.PutChannel(c) }, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DeleteChannel removes a channel, its feed, its bindings and all grants
// to it.
func (l *Local) DeleteChannel(ctx context.Context, id uint64) error {
	return l.change(ctx, func(ctx context.Context) (func(), error) {
		if err := l.Channels.DeleteChannel(ctx, id); err != nil {
			return nil, err
		}
		return func() {
			l.Registry.DeleteChannel(id)
			l.channelGone(id)
		}, nil
	})
}

// ClearChannel deletes every entry of a channel; numbering restarts at 1.
// It guards no check, so it runs outside Tx: inside, a shared store must
// delete the whole feed in the one transaction, holding the channel's
// row (which every append to it waits on) and the change lock of every
// server for as long.
func (l *Local) ClearChannel(ctx context.Context, id uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.Channels.ClearChannel(ctx, id); err != nil {
		return err
	}
	l.clearedHere(id)
	return nil
}

// Channel returns one channel with its LastEntryID.
func (l *Local) Channel(ctx context.Context, id uint64) (*channels.Channel, error) {
	return l.Channels.FindChannel(ctx, id)
}

// ListChannels returns all channels.
func (l *Local) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	return l.Channels.ListChannels(ctx)
}

// Entries returns entries of a channel.
func (l *Local) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	return l.Channels.Entries(ctx, id, f)
}
