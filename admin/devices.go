package admin

import (
	"context"
	"fmt"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// CreateDevice creates a device with generated credentials and the given
// grants.
func (l *Local) CreateDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error) {
	var cr *auth.Credentials
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		var err error
		cr, err = l.createDevice(ctx, spec)
		if err != nil {
			return nil, err
		}
		return func() { l.Registry.PutDevice(cr.Device) }, nil
	})
	if err != nil {
		return nil, err
	}
	return cr, nil
}

// createDevice checks the limits and stores the device spec asks for,
// with fresh credentials.
func (l *Local) createDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error) {
	d := &auth.Device{Name: strings.TrimSpace(spec.Name), Description: spec.Description}
	if err := checkDeviceText(d); err != nil {
		return nil, err
	}
	devs, err := l.Devices.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	if l.Limits.MaxDevices > 0 && len(devs) >= l.Limits.MaxDevices {
		return nil, channels.Errorf(channels.ELIMIT, "device limit reached (%d devices); delete one or raise limits.max_devices", l.Limits.MaxDevices)
	}
	if d.Channels, err = l.mergeGrants(ctx, nil, spec.Grants); err != nil {
		return nil, err
	}
	if err := auth.CheckRules(spec.Rules); err != nil {
		return nil, err
	}
	d.Rules = append([]auth.Rule(nil), spec.Rules...)
	d.ClientID = auth.NewClientID()
	d.Username = d.ClientID
	password := auth.NewPassword()
	d.PasswordHash = auth.HashPassword(password)
	if err := l.Devices.CreateDevice(ctx, d); err != nil {
		return nil, err
	}
	return &auth.Credentials{Device: d, Password: password}, nil
}

// checkDeviceText checks the name and description a user gives a device.
func checkDeviceText(d *auth.Device) error {
	if d.Name == "" || !channels.ValidText(d.Name, channels.MaxNameLen, false) {
		return channels.Errorf(channels.EINVALID, "device name is required (valid UTF-8, at most %d bytes, no control characters)", channels.MaxNameLen)
	}
	if !channels.ValidText(d.Description, channels.MaxDescriptionLen, true) {
		return channels.Errorf(channels.EINVALID, "device description must be valid UTF-8 of at most %d bytes without control characters other than tabs and line breaks", channels.MaxDescriptionLen)
	}
	return nil
}

// UpdateDevice changes the device's name, description, grants or access
// rules. New grants replace all the old ones under the same rules as
// AuthorizeDevice, new rules all the old rules (CheckRules); a right the
// device loses ends at once, as with DeauthorizeDevice, since the broker
// checks the registry on every packet.
func (l *Local) UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error) {
	return l.changeDevice(ctx, id, false, func(ctx context.Context, d *auth.Device) error {
		if u.Name != nil {
			d.Name = strings.TrimSpace(*u.Name)
		}
		if u.Description != nil {
			d.Description = *u.Description
		}
		if err := checkDeviceText(d); err != nil {
			return err
		}
		if u.Grants != nil {
			grants, err := l.mergeGrants(ctx, nil, *u.Grants)
			if err != nil {
				return err
			}
			d.Channels = grants
		}
		if u.Rules != nil {
			if err := auth.CheckRules(*u.Rules); err != nil {
				return err
			}
			d.Rules = append([]auth.Rule(nil), (*u.Rules)...)
		}
		return nil
	})
}

// AuthorizeDevice adds or replaces the device's grants on channels.
func (l *Local) AuthorizeDevice(ctx context.Context, id uint64, grants []auth.Grant) (*auth.Device, error) {
	return l.changeDevice(ctx, id, false, func(ctx context.Context, d *auth.Device) error {
		merged, err := l.mergeGrants(ctx, d.Channels, grants)
		d.Channels = merged
		return err
	})
}

// DeauthorizeDevice removes the device's grant on channel ch. Live
// subscriptions stop receiving at once: the broker checks every delivery.
func (l *Local) DeauthorizeDevice(ctx context.Context, id, ch uint64) (*auth.Device, error) {
	return l.changeDevice(ctx, id, false, func(_ context.Context, d *auth.Device) error {
		if _, ok := d.Grant(ch); !ok {
			return &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("device %d is not authorized for channel %d", id, ch), Err: auth.ErrNoGrant}
		}
		kept := make([]auth.Grant, 0, len(d.Channels)-1)
		for _, g := range d.Channels {
			if g.ChannelID != ch {
				kept = append(kept, g)
			}
		}
		d.Channels = kept
		return nil
	})
}

// ResetPassword gives the device a new password. The old one stops working
// at once and live connections that used it are closed.
func (l *Local) ResetPassword(ctx context.Context, id uint64) (*auth.Credentials, error) {
	password := auth.NewPassword()
	d, err := l.changeDevice(ctx, id, true, func(_ context.Context, d *auth.Device) error {
		d.PasswordHash = auth.HashPassword(password)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &auth.Credentials{Device: d, Password: password}, nil
}

// DeleteDevice removes a device and closes its live connections.
func (l *Local) DeleteDevice(ctx context.Context, id uint64) error {
	return l.change(ctx, func(ctx context.Context) (func(), error) {
		if err := l.Devices.DeleteDevice(ctx, id); err != nil {
			return nil, err
		}
		return func() {
			l.Registry.DeleteDevice(id)
			if l.Revoke != nil {
				l.Revoke(id)
			}
		}, nil
	})
}

// Device returns one device.
func (l *Local) Device(ctx context.Context, id uint64) (*auth.Device, error) {
	return l.Devices.FindDevice(ctx, id)
}

// ListDevices returns all devices.
func (l *Local) ListDevices(ctx context.Context) ([]*auth.Device, error) {
	return l.Devices.ListDevices(ctx)
}

// changeDevice applies change to device id, stores it and updates the
// registry; revoke closes the device's live connections afterwards.
// change gets the context of the transaction for the store calls it
// makes (mergeGrants).
func (l *Local) changeDevice(ctx context.Context, id uint64, revoke bool, change func(context.Context, *auth.Device) error) (*auth.Device, error) {
	var d *auth.Device
	err := l.change(ctx, func(ctx context.Context) (func(), error) {
		var err error
		if d, err = l.Devices.FindDevice(ctx, id); err != nil {
			return nil, err
		}
		if err := change(ctx, d); err != nil {
			return nil, err
		}
		if err := l.Devices.UpdateDevice(ctx, d); err != nil {
			return nil, err
		}
		return func() {
			l.Registry.PutDevice(d)
			if revoke && l.Revoke != nil {
				l.Revoke(id)
			}
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// mergeGrants returns have with add applied (a grant for a channel already
// present replaces it), after checking the per-device channel limit. The
// store checks that every channel exists, in the transaction that writes.
func (l *Local) mergeGrants(ctx context.Context, have, add []auth.Grant) ([]auth.Grant, error) {
	out := append([]auth.Grant(nil), have...)
	for _, g := range add {
		if !g.Publish && !g.Subscribe {
			return nil, channels.Errorf(channels.EINVALID, "a grant on channel %d needs publish, subscribe or both", g.ChannelID)
		}
		replaced := false
		for i := range out {
			if out[i].ChannelID == g.ChannelID {
				out[i], replaced = g, true
			}
		}
		if !replaced {
			out = append(out, g)
		}
	}
	if l.Limits.MaxChannelsPerDevice > 0 && len(out) > l.Limits.MaxChannelsPerDevice {
		// A missing channel is reported first, as the store would once
		// the limit holds: dropping grants to meet the limit must not
		// only lead to another error.
		for _, g := range add {
			if _, err := l.Channels.FindChannel(ctx, g.ChannelID); err != nil {
				return nil, err
			}
		}
		return nil, channels.Errorf(channels.ELIMIT, "a device may be authorized for at most %d channels (limits.max_channels_per_device)", l.Limits.MaxChannelsPerDevice)
	}
	return out, nil
}
