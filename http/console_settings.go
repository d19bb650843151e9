package httpd

import "github.com/feedmq/feedmq/auth"

// applySettings copies the location, metadata, tags and URL into a new
// channel's spec; the service checks them.
func (f channelForm) applySettings(s *auth.ChannelSpec) {
	s.Latitude, s.Longitude, s.Elevation = f.Latitude, f.Longitude, f.Elevation
	s.Metadata, s.Tags, s.URL = f.Metadata, formTags(f.Tags), f.URL
}

// applyUpdate copies the location, metadata, tags and URL into an update:
// the form shows them all, so an emptied one is unset.
func (f channelForm) applyUpdate(u *auth.ChannelUpdate) {
	tags := formTags(f.Tags)
	u.Latitude, u.Longitude, u.Elevation = &f.Latitude, &f.Longitude, &f.Elevation
	u.Metadata, u.Tags, u.URL = &f.Metadata, &tags, &f.URL
}
