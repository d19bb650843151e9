// Package adminsock is a small JSON RPC transport over a unix socket. A
// running feedmq serve listens on one so that admin commands reach its live
// state; the package itself knows nothing about channels or devices.
//
// # Protocol
//
// A client connects and sends requests, one JSON object per line:
//
//	{"op":"channel.create","args":{...}}
//
// The server answers each request, in order, with one line:
//
//	{"result":...}
//	{"error":{"code":"not_found","message":"channel 9 not found","kind":"channel_not_found"}}
//
// A connection may carry any number of requests. Lines are limited to
// MaxRequestSize bytes on the server side.
package adminsock

import (
	"encoding/json"
	"errors"
)

// MaxRequestSize bounds one request line. It must hold the largest
// request a command sends: an access-rule file of up to 1 MiB crosses as
// JSON, which takes six bytes for each <, > or &. The socket is the
// server owner's only (mode 0600).
const MaxRequestSize = 8 << 20

// CodeInternal is the code of an error that the handler did not classify.
const CodeInternal = "internal"

// ErrNoServer is returned by Dial when nothing answers on the socket: the
// file does not exist, or it is left over from a server that is gone.
var ErrNoServer = errors.New("no server answers on the admin socket")

// Error is an error carried over the socket: a code the caller can branch
// on, a message fit to show a user and optionally the name of a sentinel
// error that the handler and its client agree on, so the client can hand
// its caller the same sentinel. A handler returns an *Error to choose what
// the client sees; any other error arrives with code CodeInternal and its
// Error() text.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// request is one line from client to server.
type request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// response is one line from server to client; exactly one field is set.
type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// toError converts a handler error into its wire form.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
