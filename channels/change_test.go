package channels_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// A store's rate refusal carries the code callers branch on, the sentinel
// and the message the broker's own check gives; a commit of unknown
// outcome wrapped by a store is found with errors.Is and has no
// application code, so nothing takes it for a refusal.
func TestStoreOutcomeErrors(t *testing.T) {
	err := fmt.Errorf("append: %w", channels.RateLimited(7, 15*time.Second, 4200*time.Microsecond))
	if channels.ErrorCode(err) != channels.ERATELIMIT || !errors.Is(err, channels.ErrRateLimited) {
		t.Fatalf("rate refusal: code %q, is ErrRateLimited %v", channels.ErrorCode(err), errors.Is(err, channels.ErrRateLimited))
	}
	if got, want := channels.ErrorMessage(err), "channel 7 accepts one entry every 15s; retry in 4ms"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	unknown := fmt.Errorf("commit entries of channel 3: %w", channels.ErrCommitUnknown)
	if !errors.Is(unknown, channels.ErrCommitUnknown) || channels.ErrorCode(unknown) != channels.EINTERNAL ||
		channels.ErrorMessage(unknown) != "internal error" {
		t.Fatalf("commit unknown: is %v, code %q, message %q", errors.Is(unknown, channels.ErrCommitUnknown),
			channels.ErrorCode(unknown), channels.ErrorMessage(unknown))
	}
	if errors.Is(err, channels.ErrCommitUnknown) || errors.Is(unknown, channels.ErrRateLimited) {
		t.Fatal("the two outcomes are confused")
	}
}

func TestChangeKindString(t *testing.T) {
	for k, want := range map[channels.ChangeKind]string{
		channels.ChangeChannel: "channel", channels.ChangeDevice: "device", channels.ChangeCleared: "cleared",
		channels.ChangeRules: "rules", channels.ChangeBindings: "bindings", channels.ChangeAccount: "account",
		channels.ChangeResync: "resync", 0: "unknown", 200: "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("ChangeKind(%d) = %q, want %q", k, got, want)
		}
	}
}
