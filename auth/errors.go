package auth

import "github.com/feedmq/feedmq/channels"

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
