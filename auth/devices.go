package auth

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// Credentials are a device and its password in clear: returned only when
// the password is created, never stored.
type Credentials struct {
	Device   *Device
	Password string
}

// CreateDevice creates a device with generated credentials and the given
// grants.
func (s *Service) CreateDevice(ctx context.Context, spec DeviceSpec) (*Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &Device{Name: strings.TrimSpace(spec.Name), Description: spec.Description}
	if err := checkDeviceText(d); err != nil {
		return nil, err
	}
	devs, err := s.Devices.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	if s.Limits.MaxDevices > 0 && len(devs) >= s.Limits.MaxDevices {
		return nil, channels.Errorf(channels.ELIMIT, "device limit reached (%d devices); delete one or raise limits.max_devices", s.Limits.MaxDevices)
	}
	if d.Channels, err = s.mergeGrants(ctx, nil, spec.Grants); err != nil {
		return nil, err
	}
	d.ClientID = NewClientID()
	d.Username = d.ClientID
	password := NewPassword()
	d.PasswordHash = HashPassword(password)
	if err := s.Devices.CreateDevice(ctx, d); err != nil {
		return nil, err
	}
	s.Registry.PutDevice(d)
	return &Credentials{Device: d, Password: password}, nil
}

// checkDeviceText checks the name and description a user gives a device.
func checkDeviceText(d *Device) error {
	if d.Name == "" || len(d.Name) > channels.MaxNameLen || !utf8.ValidString(d.Name) {
		return channels.Errorf(channels.EINVALID, "device name is required (valid UTF-8, at most %d bytes)", channels.MaxNameLen)
	}
	if len(d.Description) > channels.MaxDescriptionLen || !utf8.ValidString(d.Description) {
		return channels.Errorf(channels.EINVALID, "device description must be valid UTF-8 of at most %d bytes", channels.MaxDescriptionLen)
	}
	return nil
}

// UpdateDevice changes the device's name, description or grants. New
// grants replace all the old ones under the same rules as AuthorizeDevice;
// a right the device loses ends at once, as with DeauthorizeDevice, since
// the broker checks the registry on every packet.
func (s *Service) UpdateDevice(ctx context.Context, id uint64, u DeviceUpdate) (*Device, error) {
	return s.changeDevice(ctx, id, false, func(d *Device) error {
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
			grants, err := s.mergeGrants(ctx, nil, *u.Grants)
			if err != nil {
				return err
			}
			d.Channels = grants
		}
		return nil
	})
}

// AuthorizeDevice adds or replaces the device's grants on channels.
func (s *Service) AuthorizeDevice(ctx context.Context, id uint64, grants []Grant) (*Device, error) {
	return s.changeDevice(ctx, id, false, func(d *Device) error {
		merged, err := s.mergeGrants(ctx, d.Channels, grants)
		d.Channels = merged
		return err
	})
}

// DeauthorizeDevice removes the device's grant on channel ch. Live
// subscriptions stop receiving at once: the broker checks every delivery.
func (s *Service) DeauthorizeDevice(ctx context.Context, id, ch uint64) (*Device, error) {
	return s.changeDevice(ctx, id, false, func(d *Device) error {
		if _, ok := d.Grant(ch); !ok {
			return &channels.Error{Code: channels.ENOTFOUND, Message: fmt.Sprintf("device %d is not authorized for channel %d", id, ch), Err: ErrNoGrant}
		}
		*d = *withoutGrant(d, ch)
		return nil
	})
}

// ResetPassword gives the device a new password. The old one stops working
// at once and live connections that used it are closed.
func (s *Service) ResetPassword(ctx context.Context, id uint64) (*Credentials, error) {
	password := NewPassword()
	d, err := s.changeDevice(ctx, id, true, func(d *Device) error {
		d.PasswordHash = HashPassword(password)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Credentials{Device: d, Password: password}, nil
}

// DeleteDevice removes a device and closes its live connections.
func (s *Service) DeleteDevice(ctx context.Context, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Devices.DeleteDevice(ctx, id); err != nil {
		return err
	}
	s.Registry.DeleteDevice(id)
	if s.Revoke != nil {
		s.Revoke(id)
	}
	return nil
}

// Device returns one device.
func (s *Service) Device(ctx context.Context, id uint64) (*Device, error) {
	return s.Devices.FindDevice(ctx, id)
}

// ListDevices returns all devices.
func (s *Service) ListDevices(ctx context.Context) ([]*Device, error) {
	return s.Devices.ListDevices(ctx)
}

func (s *Service) changeDevice(ctx context.Context, id uint64, revoke bool, change func(*Device) error) (*Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Devices.FindDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := change(d); err != nil {
		return nil, err
	}
	if err := s.Devices.UpdateDevice(ctx, d); err != nil {
		return nil, err
	}
	s.Registry.PutDevice(d)
	if revoke && s.Revoke != nil {
		s.Revoke(id)
	}
	return d, nil
}

// mergeGrants returns have with add applied (a grant for a channel already
// present replaces it), after checking the per-device channel limit. The
// store checks that every channel exists, in the transaction that writes.
func (s *Service) mergeGrants(ctx context.Context, have, add []Grant) ([]Grant, error) {
	out := append([]Grant(nil), have...)
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
	if s.Limits.MaxChannelsPerDevice > 0 && len(out) > s.Limits.MaxChannelsPerDevice {
		// A missing channel is reported first, as the store would once
		// the limit holds: dropping grants to meet the limit must not
		// only lead to another error.
		for _, g := range add {
			if _, err := s.Channels.FindChannel(ctx, g.ChannelID); err != nil {
				return nil, err
			}
		}
		return nil, channels.Errorf(channels.ELIMIT, "a device may be authorized for at most %d channels (limits.max_channels_per_device)", s.Limits.MaxChannelsPerDevice)
	}
	return out, nil
}
