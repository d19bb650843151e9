package httpd

import "github.com/feedmq/feedmq/auth"

// settingsSpec copies the location, metadata, tags and URL of a create
// request into spec.
func settingsSpec(spec *auth.ChannelSpec, req *manageReq) *apiError {
	return nil
}

// settingsUpdate sets the location, metadata, tags and URL an update
// request gives; changed reports whether it gave any.
func settingsUpdate(u *auth.ChannelUpdate, req *manageReq) (changed bool, aerr *apiError) {
	return false, nil
}
