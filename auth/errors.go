package auth

import (
	"errors"

	"github.com/feedmq/feedmq/channels"
)

// Sentinel errors; callers test them with errors.Is. They carry domain
// error codes so adapters can map them with channels.ErrorCode.
var (
	// ErrBadCredentials: unknown username or wrong password (CONNACK 0x04).
	ErrBadCredentials = &channels.Error{Code: channels.EFORBIDDEN, Message: "bad username or password"}
	// ErrClientID: right password, but a client ID other than the
	// device's (CONNACK 0x05).
	ErrClientID = &channels.Error{Code: channels.EFORBIDDEN, Message: "client ID does not match the device"}
	// ErrAnonymous: anonymous connections are turned off.
	ErrAnonymous = &channels.Error{Code: channels.EFORBIDDEN, Message: "anonymous connections are not allowed"}
	// ErrNotAuthorized: the connection may not use that channel that way.
	ErrNotAuthorized = &channels.Error{Code: channels.EFORBIDDEN, Message: "not authorized"}
	// ErrUnknownChannel: no channel with that ID.
	ErrUnknownChannel = &channels.Error{Code: channels.ENOTFOUND, Message: "unknown channel"}
)

// Causes wrapped (channels.Error.Err, code ENOTFOUND) by errors about a
// missing device or grant.
var (
	// ErrDeviceNotFound: no device with that ID.
	ErrDeviceNotFound = errors.New("device not found")
	// ErrNoGrant: the device has no grant on that channel.
	ErrNoGrant = errors.New("device not authorized for the channel")
)
