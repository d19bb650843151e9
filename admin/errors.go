package admin

import (
	"errors"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/adminsock"
)

// sentinels are the errors that keep their identity across the socket, by
// name, so a caller tests a Client's errors with errors.Is as it would a
// Local's. Names are part of the socket protocol: never rename one.
var sentinels = []struct {
	name string
	err  error
}{
	{"channel_not_found", channels.ErrChannelNotFound},
	{"device_not_found", auth.ErrDeviceNotFound},
	{"no_grant", auth.ErrNoGrant},
	{"unknown_channel", auth.ErrUnknownChannel},
	{"not_authorized", auth.ErrNotAuthorized},
	{"topic", channels.ErrTopic},
	{"payload", channels.ErrPayload},
	{"too_large", channels.ErrTooLarge},
	{"bad_password", auth.ErrBadPassword},
	{"bad_user_key", auth.ErrBadUserKey},
	{"setup_token", auth.ErrSetupToken},
	{"no_rule", auth.ErrNoRule},
}

// toWire is err as the handler sends it: its code, its message and the
// name of the sentinel it wraps, if any.
func toWire(err error) *adminsock.Error {
	e := &adminsock.Error{Code: channels.ErrorCode(err), Message: err.Error()}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			e.Kind = s.name
			break
		}
	}
	return e
}

// fromWire turns an error the server answered into a *channels.Error
// with the same code and message, wrapping the named sentinel. Transport
// errors pass unchanged.
func fromWire(err error) error {
	var e *adminsock.Error
	if !errors.As(err, &e) {
		return err
	}
	out := &channels.Error{Code: e.Code, Message: e.Message}
	for _, s := range sentinels {
		if s.name == e.Kind {
			out.Err = s.err
		}
	}
	return out
}
