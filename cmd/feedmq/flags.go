package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// oneID is an Args validator for commands taking exactly one ID.
func oneID(kind string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes one %s ID, e.g. `%s 1`", cmd.CommandPath(), kind, cmd.CommandPath())
		}
		return nil
	}
}

// parseID parses a channel or device ID: a whole number from 1, spelled
// as everywhere else (channels.ParseID: no sign, no leading zero).
func parseID(kind, s string) (uint64, error) {
	id, err := channels.ParseID(s)
	if err != nil {
		return 0, fmt.Errorf("invalid %s ID %q: IDs are whole numbers from 1 without leading zeros; see `feedmq %s list`", kind, s, kind)
	}
	return id, nil
}

// parseFields parses --field N=LABEL values into a number -> label map.
// allowEmpty permits "N=" (disable field N, for update).
func parseFields(vals []string, allowEmpty bool) (map[int]string, error) {
	out := make(map[int]string, len(vals))
	for _, v := range vals {
		num, label, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if !ok || err != nil {
			return nil, fmt.Errorf("invalid --field %q: want N=LABEL, e.g. --field 1=Temperature", v)
		}
		if n < 1 || n > channels.NumFields {
			return nil, fmt.Errorf("invalid --field %q: field number must be from 1 to %d", v, channels.NumFields)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("--field %d is given twice", n)
		}
		if label == "" && !allowEmpty {
			return nil, fmt.Errorf("invalid --field %q: give a label, e.g. --field %d=Temperature", v, n)
		}
		out[n] = label
	}
	return out, nil
}

// parseGrants parses --channel ID[:pub|:sub|:pubsub] values with the
// grammar every front shares (auth.ParseGrants). A bare ID grants publish
// and subscribe.
func parseGrants(vals []string) ([]auth.Grant, error) {
	gs, err := auth.ParseGrants(vals)
	if err != nil {
		msg := channels.ErrorMessage(err)
		if strings.HasPrefix(msg, "channel ") { // "channel N is given twice"
			return nil, fmt.Errorf("--%s", msg)
		}
		return nil, fmt.Errorf("invalid --channel %s", msg)
	}
	return gs, nil
}

// hintedError is an error with the command to run next appended.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + "; see `" + e.hint + "`" }
func (e *hintedError) Unwrap() error { return e.err }

// withHint appends what to do next to a not-found error that has no hint
// yet; other errors pass unchanged. The code of err is kept.
func withHint(err error, hint string) error {
	var h *hintedError
	if err == nil || channels.ErrorCode(err) != channels.ENOTFOUND || errors.As(err, &h) {
		return err
	}
	return &hintedError{err: err, hint: hint}
}

// deviceHint picks the listing that helps with a not-found error of a
// device command, which may be about the device or about a channel.
func deviceHint(err error) error {
	if errors.Is(err, channels.ErrChannelNotFound) || errors.Is(err, auth.ErrUnknownChannel) {
		return withHint(err, "feedmq channel list")
	}
	return withHint(err, "feedmq device list")
}
