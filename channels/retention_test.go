package channels_test

import (
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

func TestValidate_Retention(t *testing.T) {
	c := channels.Channel{Name: "c", Fields: channels.DefaultFields(), WriteKey: "AAAAAAAAAAAAAAAA", ReadKey: "BBBBBBBBBBBBBBBB"}
	c.MaxEntries, c.MaxAge = 100, 24*time.Hour
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.MaxAge = -time.Second
	if err := c.Validate(); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("negative max age: %v", err)
	}
}
