package auth

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Limits caps what one feedmq instance holds.
type Limits struct {
	MaxDevices           int // default 100
	MaxChannelsPerDevice int // default 10
}

// DefaultLimits returns ThingSpeak's per-user limits.
func DefaultLimits() Limits { return Limits{MaxDevices: 100, MaxChannelsPerDevice: 10} }

// Service performs every administrative change: it applies the limits and
// the rules the stores cannot know (device names, grant merging), writes
// the store and then updates the in-memory Registry, so the broker sees a
// change the moment the call returns. The stores check a channel's
// settings and stamp CreatedAt and UpdatedAt, in the same transaction as
// the write, so the Service does neither.
type Service struct {
	Channels channels.Store
	Devices  Store
	Registry *Registry
	Limits   Limits
	// Revoke, when set, is called after a device's password is reset or
	// the device is deleted, so live connections that used the old
	// credentials can be closed.
	Revoke func(deviceID uint64)

	mu sync.Mutex // serialises changes so limit checks cannot race
}

// NewService builds a Service and loads the Registry from the stores.
func NewService(ctx context.Context, cs channels.Store, ds Store, lim Limits) (*Service, error) {
	s := &Service{Channels: cs, Devices: ds, Registry: NewRegistry(), Limits: lim}
	chs, err := cs.ListChannels(ctx)
	if err != nil {
		return nil, fmt.Errorf("load channels: %w", err)
	}
	for _, c := range chs {
		s.Registry.PutChannel(c)
	}
	devs, err := ds.ListDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	for _, d := range devs {
		s.Registry.PutDevice(d)
	}
	return s, nil
}

// ChannelSpec describes a new channel.
type ChannelSpec struct {
	Name        string
	Description string
	// Fields holds labels; all empty means all eight fields with default
	// labels.
	Fields [channels.NumFields]string
	Public bool
	// Retention (see channels.Channel); 0 keeps everything.
	MaxEntries uint64
	MaxAge     time.Duration
	// RateLimit is the channel's minimum interval between entries; 0
	// uses the server's rate_limit.
	RateLimit time.Duration
	// Location as decimal strings, "" when unset (see channels.Channel).
	Latitude, Longitude, Elevation string
	Metadata                       string
	// Tags are normalised with channels.NormalizeTags.
	Tags []string
	URL  string
}

// CreateChannel creates a channel with fresh API keys.
func (s *Service) CreateChannel(ctx context.Context, spec ChannelSpec) (*channels.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &channels.Channel{
		Name: spec.Name, Description: spec.Description, Public: spec.Public,
		Fields: spec.Fields, WriteKey: NewAPIKey(), ReadKey: NewAPIKey(),
		MaxEntries: spec.MaxEntries, MaxAge: spec.MaxAge, RateLimit: spec.RateLimit,
		Latitude: trim(spec.Latitude), Longitude: trim(spec.Longitude), Elevation: trim(spec.Elevation),
		Metadata: spec.Metadata, Tags: channels.NormalizeTags(spec.Tags), URL: trim(spec.URL),
	}
	if c.Fields == ([channels.NumFields]string{}) {
		c.Fields = channels.DefaultFields()
	}
	if err := s.Channels.CreateChannel(ctx, c); err != nil {
		return nil, err
	}
	s.Registry.PutChannel(c)
	return c, nil
}

// ChannelUpdate changes the settings that are non-nil.
type ChannelUpdate struct {
	Name        *string
	Description *string
	// Fields maps a field number (1..8) to its new label; "" disables it.
	Fields map[int]string
	Public *bool
	// Retention; 0 removes the limit.
	MaxEntries *uint64
	MaxAge     *time.Duration
	// RateLimit; 0 falls back to the server's rate_limit.
	RateLimit *time.Duration
	// Location, metadata and URL; "" unsets one.
	Latitude, Longitude, Elevation *string
	Metadata                       *string
	// Tags replaces every tag; an empty list removes them all.
	Tags *[]string
	URL  *string
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
func (s *Service) UpdateChannel(ctx context.Context, id uint64, u ChannelUpdate) (*channels.Channel, error) {
	return s.changeChannel(ctx, id, func(c *channels.Channel) error {
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
func (s *Service) RegenerateKey(ctx context.Context, id uint64, write bool) (*channels.Channel, error) {
	return s.changeChannel(ctx, id, func(c *channels.Channel) error {
		if write {
			c.WriteKey = NewAPIKey()
		} else {
			c.ReadKey = NewAPIKey()
		}
		return nil
	})
}

func (s *Service) changeChannel(ctx context.Context, id uint64, change func(*channels.Channel) error) (*channels.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.Channels.FindChannel(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := change(c); err != nil {
		return nil, err
	}
	if err := s.Channels.UpdateChannel(ctx, c); err != nil {
		return nil, err
	}
	s.Registry.PutChannel(c)
	return c, nil
}

// DeleteChannel removes a channel, its feed and all grants to it.
func (s *Service) DeleteChannel(ctx context.Context, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Channels.DeleteChannel(ctx, id); err != nil {
		return err
	}
	s.Registry.DeleteChannel(id)
	return nil
}

// ClearChannel deletes every entry of a channel; numbering restarts at 1.
func (s *Service) ClearChannel(ctx context.Context, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Channels.ClearChannel(ctx, id)
}

// Channel returns one channel with its LastEntryID.
func (s *Service) Channel(ctx context.Context, id uint64) (*channels.Channel, error) {
	return s.Channels.FindChannel(ctx, id)
}

// ListChannels returns all channels.
func (s *Service) ListChannels(ctx context.Context) ([]*channels.Channel, error) {
	return s.Channels.ListChannels(ctx)
}

// Entries returns entries of a channel.
func (s *Service) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	return s.Channels.Entries(ctx, id, f)
}
