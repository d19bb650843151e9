package channels

import (
	"errors"
	"fmt"
	"time"
)

// Error codes shared by the domain packages. Adapters map them to MQTT
// reason codes, HTTP statuses or CLI exit messages.
const (
	EINVALID   = "invalid"      // bad input from a user or device
	ENOTFOUND  = "not_found"    // no such channel, device or entry
	ECONFLICT  = "conflict"     // the change clashes with existing state
	ELIMIT     = "limit"        // a configured limit would be exceeded
	EFORBIDDEN = "forbidden"    // the caller lacks the right
	ERATELIMIT = "rate_limited" // written too soon after the previous entry
	EINTERNAL  = "internal"     // anything else: a bug or an I/O failure
)

// Error is an application error: a code callers can branch on and a
// message fit to show a user.
type Error struct {
	Code    string
	Message string
	// Err is the sentinel or cause the error wraps, or nil. Parse errors
	// set it to ErrTopic, ErrPayload or ErrTooLarge.
	Err error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns e.Err, so that errors.Is sees the wrapped sentinel.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an application error in err's chain, or
// EINTERNAL for any other non-nil error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the application
// error's message, or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Sentinel errors of parsing. ParseTopic and ParsePayload return them
// wrapped in an *Error with code EINVALID (Error.Err), so callers can test
// with errors.Is or with ErrorCode.
var (
	// ErrTopic is returned for a topic that is not a feedmq channel topic.
	ErrTopic = errors.New("not a channel topic")
	// ErrPayload is returned for a payload that cannot become an entry.
	ErrPayload = errors.New("invalid payload")
	// ErrTooLarge is returned for a payload over the size limit.
	ErrTooLarge = errors.New("payload too large")
)

// ErrChannelNotFound is wrapped (Error.Err, code ENOTFOUND) by a store
// asked for a channel it does not hold.
var ErrChannelNotFound = errors.New("channel not found")

// ErrRateLimited is wrapped (Error.Err, code ERATELIMIT) by a store that
// refuses an entry because its channel took one too recently by the
// store's own clock. Nothing is stored; callers answer it as they answer
// their own rate checks.
var ErrRateLimited = errors.New("rate limited")

// RateLimited returns the refusal of an entry for channel id, whose
// limit is one entry every interval, that may be sent again after retry.
func RateLimited(id uint64, interval, retry time.Duration) *Error {
	return &Error{Code: ERATELIMIT, Err: ErrRateLimited,
		Message: fmt.Sprintf("channel %d accepts one entry every %s; retry in %s", id, interval, retry.Round(time.Millisecond))}
}

// ErrCommitUnknown is in the chain of a store's error when it lost its
// connection to the database while committing: the write may or may not
// have been stored. Callers must not claim it was stored and must not
// retry it blindly, which could store it twice. It carries no
// application code (ErrorCode says EINTERNAL).
var ErrCommitUnknown = errors.New("commit outcome unknown: the connection to the database was lost while committing")
