// Package auth holds feedmq's devices, their credentials and their
// per-channel rights, and answers the questions the broker asks for every
// packet ("may this connection publish to channel 7?") from memory.
//
// It is plain Go over the channels domain: no broker, database or CLI.
package auth

import (
	"context"
	"time"
)

// Device is a set of MQTT credentials with rights on channels.
type Device struct {
	ID          uint64
	Name        string
	Description string
	ClientID    string // equals Username, as ThingSpeak generates them
	Username    string
	// PasswordHash is HashPassword(password); the password itself is
	// never stored.
	PasswordHash string
	Channels     []Grant
	// Rules are the device's access rules on free topics (rules.go),
	// checked in order with deny first; none: no free topic at all.
	Rules     []Rule
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Credentials are a device and its password in clear: returned only when
// the password is created, never stored.
type Credentials struct {
	Device   *Device
	Password string
}

// DeviceSpec describes a new device.
type DeviceSpec struct {
	Name        string
	Description string
	Grants      []Grant
	// Rules are the device's access rules on free topics (CheckRules).
	Rules []Rule
}

// DeviceUpdate changes the settings that are non-nil. Grants, when
// non-nil, replaces all of the device's grants; Rules all its rules.
type DeviceUpdate struct {
	Name        *string
	Description *string
	Grants      *[]Grant
	// Rules, when non-nil, replaces all of the device's access rules.
	Rules *[]Rule
}

// Grant is a device's right on one channel.
type Grant struct {
	ChannelID uint64 `json:"id"`
	Publish   bool   `json:"publish"`
	Subscribe bool   `json:"subscribe"`
}

// Grant returns the device's grant for channel id, if any.
func (d *Device) Grant(id uint64) (Grant, bool) {
	for _, g := range d.Channels {
		if g.ChannelID == id {
			return g, true
		}
	}
	return Grant{}, false
}

// Store keeps devices. storage.DB implements it on bbolt. Methods return
// *channels.Error values with code ENOTFOUND for a missing device and
// ECONFLICT for a duplicate username. A store several servers share
// keeps usernames unique across all of them, tells them of each other's
// changes (channels.ChangeNotifier) and runs a limit check with the
// writes it guards in one transaction (channels.Transactor).
type Store interface {
	// CreateDevice assigns d.ID (1, 2, ...), sets CreatedAt and
	// UpdatedAt to now and stores d. ECONFLICT when the username is
	// taken; ENOTFOUND (channels.ErrChannelNotFound) when a grant names a
	// missing channel.
	CreateDevice(ctx context.Context, d *Device) error
	// UpdateDevice replaces device d.ID, setting UpdatedAt to now and
	// keeping CreatedAt. ENOTFOUND, ECONFLICT.
	UpdateDevice(ctx context.Context, d *Device) error
	// DeleteDevice removes a device. ENOTFOUND.
	DeleteDevice(ctx context.Context, id uint64) error
	// FindDevice returns one device. ENOTFOUND.
	FindDevice(ctx context.Context, id uint64) (*Device, error)
	// ListDevices returns all devices ordered by ID.
	ListDevices(ctx context.Context) ([]*Device, error)
}
