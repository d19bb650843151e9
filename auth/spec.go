package auth

import (
	"time"

	"github.com/feedmq/feedmq/channels"
)

// This file holds what a front asks the admin service for (specs and
// updates) and the limits it enforces; the admin service applies its
// rules to them and the store its checks.

// Limits caps what one feedmq instance holds; the admin service enforces
// them.
type Limits struct {
	MaxDevices           int // default 100
	MaxChannelsPerDevice int // default 10
	// Bindings of free topics to channels: each one costs every publish
	// on a matching topic an extraction and a commit.
	MaxBindingsPerChannel int // default 10
	MaxBindings           int // default 200
}

// DefaultLimits returns ThingSpeak's per-user limits, and feedmq's own for
// bindings, which ThingSpeak does not have.
func DefaultLimits() Limits {
	return Limits{MaxDevices: 100, MaxChannelsPerDevice: 10, MaxBindingsPerChannel: 10, MaxBindings: 200}
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
