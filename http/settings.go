package httpd

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// appendSettings appends a channel's settings in ThingSpeak's shape and
// key order: id, name, description, latitude, longitude, created_at,
// elevation, last_entry_id, public_flag, url, metadata, then the labels
// of the enabled fields (field1..field8, which ThingSpeak's settings
// answer lacks but its create and update take), tags and, for the owner,
// api_keys (the write key, then the read key).
//
// As on ThingSpeak, latitude and longitude are strings, or null when
// unset, and elevation a string ("" when unset); last_entry_id is null for
// a channel without entries. Tags are objects with a name only: ThingSpeak
// numbers each tag across all users, which a tag here does not have.
func appendSettings(b []byte, ch *channels.Channel, owner bool) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, ch.ID, 10)
	b = append(b, `,"name":`...)
	b = channels.AppendJSONString(b, ch.Name)
	b = append(b, `,"description":`...)
	b = channels.AppendJSONString(b, ch.Description)
	b = append(b, `,"latitude":`...)
	b = appendOptString(b, ch.Latitude)
	b = append(b, `,"longitude":`...)
	b = appendOptString(b, ch.Longitude)
	b = append(b, `,"created_at":"`...)
	b = ch.CreatedAt.UTC().AppendFormat(b, channels.TimeFormat)
	b = append(b, `","elevation":`...)
	b = channels.AppendJSONString(b, ch.Elevation)
	b = append(b, `,"last_entry_id":`...)
	if ch.LastEntryID == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendUint(b, ch.LastEntryID, 10)
	}
	b = append(b, `,"public_flag":`...)
	b = strconv.AppendBool(b, ch.Public)
	b = append(b, `,"url":`...)
	b = channels.AppendJSONString(b, ch.URL)
	b = append(b, `,"metadata":`...)
	b = channels.AppendJSONString(b, ch.Metadata)
	for n := 1; n <= channels.NumFields; n++ {
		if ch.FieldEnabled(n) {
			b = append(b, `,"field`...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, `":`...)
			b = channels.AppendJSONString(b, ch.Fields[n-1])
		}
	}
	b = append(b, `,"tags":[`...)
	for i, t := range ch.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = channels.AppendJSONString(b, t)
		b = append(b, '}')
	}
	b = append(b, ']')
	if owner {
		b = append(b, `,"api_keys":[{"api_key":`...)
		b = channels.AppendJSONString(b, ch.WriteKey)
		b = append(b, `,"write_flag":true},{"api_key":`...)
		b = channels.AppendJSONString(b, ch.ReadKey)
		b = append(b, `,"write_flag":false}]`...)
	}
	return append(b, '}')
}

// appendOptString appends s as a JSON string, or null when empty.
func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return channels.AppendJSONString(b, s)
}

func writeChannel(w http.ResponseWriter, ch *channels.Channel, owner bool) {
	writeBody(w, http.StatusOK, "application/json; charset=utf-8", appendSettings(make([]byte, 0, 512), ch, owner))
}

// channelSettings answers GET /channels/<id>.json: the settings with
// api_keys for the owner (whose key was checked), without them to anyone
// for a public channel. A private channel needs the user API key, as on
// ThingSpeak: its read key opens the feed, not the settings.
func (h *handler) channelSettings(w http.ResponseWriter, r *http.Request, id uint64, owner bool) {
	ch, err := h.opts.Admin.Channel(r.Context(), id)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	if !owner && !ch.Public {
		h.refuseKey(w, r, "no user API key", "")
		return
	}
	if strings.HasSuffix(r.URL.Path, ".xml") {
		writeBody(w, http.StatusOK, ctXML, appendSettingsXML(make([]byte, 0, 1024), ch, owner))
		return
	}
	writeChannel(w, ch, owner)
}

// tagFilter returns the channels of list that have tag (any case), or
// list when tag is "".
func tagFilter(list []*channels.Channel, tag string) []*channels.Channel {
	tag = strings.TrimSpace(tag)
	if tag == "" {
		return list
	}
	var out []*channels.Channel
	for _, c := range list {
		for _, t := range c.Tags {
			if strings.EqualFold(t, tag) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// ownerChannels answers GET /channels.json: every channel, by ID, with
// its keys; tag=NAME keeps the channels with that tag.
func (h *handler) ownerChannels(w http.ResponseWriter, r *http.Request, req *manageReq) {
	list, err := h.opts.Admin.ListChannels(r.Context())
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	list = tagFilter(list, req.get("tag"))
	b := append(make([]byte, 0, 512*(len(list)+1)), '[')
	for i, c := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSettings(b, c, true)
	}
	b = append(b, ']')
	writeBody(w, http.StatusOK, "application/json; charset=utf-8", b)
}

// maxPage bounds page=: beyond it every page is empty anyway.
const maxPage = 1 << 30

// publicChannels answers GET /channels/public.json without a key: the
// public channels by ID, publicPerPage a page, in ThingSpeak's shape
// {"pagination":{"current_page":1,"per_page":15,"total_entries":N},
// "channels":[...]}; tag=NAME keeps the channels with that tag. A page
// past the end has no channels.
func (h *handler) publicChannels(w http.ResponseWriter, r *http.Request, req *manageReq) {
	page := 1
	if s := req.get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage || s[0] == '+' {
			h.fail(w, r, "json", badRequest("page must be a whole number from 1."))
			return
		}
		page = n
	}
	list, err := h.opts.Admin.ListChannels(r.Context())
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	public := list[:0:0]
	for _, c := range tagFilter(list, req.get("tag")) {
		if c.Public {
			public = append(public, c)
		}
	}
	b := append(make([]byte, 0, 8<<10), `{"pagination":{"current_page":`...)
	b = strconv.AppendInt(b, int64(page), 10)
	b = append(b, `,"per_page":`...)
	b = strconv.AppendInt(b, publicPerPage, 10)
	b = append(b, `,"total_entries":`...)
	b = strconv.AppendInt(b, int64(len(public)), 10)
	b = append(b, `},"channels":[`...)
	first := (page - 1) * publicPerPage
	for i := first; i < len(public) && i < first+publicPerPage; i++ {
		if i > first {
			b = append(b, ',')
		}
		b = appendSettings(b, public[i], false)
	}
	b = append(b, "]}"...)
	writeBody(w, http.StatusOK, "application/json; charset=utf-8", b)
}

// channelFieldNames are the field label parameters, field1..field8.
var channelFieldNames = func() (names [channels.NumFields]string) {
	for i := range names {
		names[i] = channels.FieldName(i + 1)
	}
	return names
}()

// parsePublic reads public_flag: true or false (also 1 or 0, as Rails
// takes them).
func parsePublic(s string) (bool, *apiError) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, badRequest("public_flag must be true or false.")
}

// createChannel answers POST /channels.json with the new channel and its
// keys. name is required; without any fieldN the channel gets the eight
// default fields, as from the CLI.
func (h *handler) createChannel(w http.ResponseWriter, r *http.Request, req *manageReq) {
	spec := auth.ChannelSpec{Name: req.get("name"), Description: req.get("description")}
	if !req.has("name") || strings.TrimSpace(spec.Name) == "" {
		h.fail(w, r, "json", badRequest("name is required: the channel's name, such as name=Weather station."))
		return
	}
	for i, f := range channelFieldNames {
		spec.Fields[i] = req.get(f)
	}
	if req.has("public_flag") {
		var aerr *apiError
		if spec.Public, aerr = parsePublic(req.get("public_flag")); aerr != nil {
			h.fail(w, r, "json", aerr)
			return
		}
	}
	settingsSpec(&spec, req)
	ch, err := h.opts.Admin.CreateChannel(r.Context(), spec)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	h.log.Info("http: channel created", "channel", ch.ID)
	writeChannel(w, ch, true)
}

// updateChannel answers PUT /channels/<id>.json: the settings given
// change, the others stay; the answer is the channel with its keys.
func (h *handler) updateChannel(w http.ResponseWriter, r *http.Request, id uint64, req *manageReq) {
	var u auth.ChannelUpdate
	changed := false
	if req.has("name") {
		name := req.get("name")
		u.Name, changed = &name, true
	}
	if req.has("description") {
		desc := req.get("description")
		u.Description, changed = &desc, true
	}
	for i, f := range channelFieldNames {
		if req.has(f) {
			if u.Fields == nil {
				u.Fields = make(map[int]string)
			}
			u.Fields[i+1], changed = req.get(f), true
		}
	}
	if req.has("public_flag") {
		pub, aerr := parsePublic(req.get("public_flag"))
		if aerr != nil {
			h.fail(w, r, "json", aerr)
			return
		}
		u.Public, changed = &pub, true
	}
	if settingsUpdate(&u, req) {
		changed = true
	}
	var ch *channels.Channel
	var err error
	if changed {
		ch, err = h.opts.Admin.UpdateChannel(r.Context(), id, u)
	} else {
		ch, err = h.opts.Admin.Channel(r.Context(), id)
	}
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	if changed {
		h.log.Info("http: channel updated", "channel", id)
	}
	writeChannel(w, ch, true)
}

// deleteChannel answers DELETE /channels/<id>.json with the channel as it
// was, without its keys (as ThingSpeak answers).
func (h *handler) deleteChannel(w http.ResponseWriter, r *http.Request, id uint64) {
	ctx := r.Context()
	ch, err := h.opts.Admin.Channel(ctx, id)
	if err == nil {
		err = h.opts.Admin.DeleteChannel(ctx, id)
	}
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	h.log.Info("http: channel deleted", "channel", id)
	writeChannel(w, ch, false)
}

// settingsSpec copies the location, metadata, tags and URL of a create
// request into spec; the admin service checks them (a bad one is a 400
// that names it).
func settingsSpec(spec *auth.ChannelSpec, req *manageReq) {
	spec.Latitude = req.get("latitude")
	spec.Longitude = req.get("longitude")
	spec.Elevation = req.get("elevation")
	spec.Metadata = req.get("metadata")
	spec.URL = req.get("url")
	if req.tags != nil {
		spec.Tags = *req.tags
	}
}

// settingsUpdate sets the location, metadata, tags and URL an update
// request gives ("" unsets one; tags= removes every tag); changed reports
// whether it gave any.
func settingsUpdate(u *auth.ChannelUpdate, req *manageReq) (changed bool) {
	for _, s := range []struct {
		name string
		dst  **string
	}{
		{"latitude", &u.Latitude}, {"longitude", &u.Longitude}, {"elevation", &u.Elevation},
		{"metadata", &u.Metadata}, {"url", &u.URL},
	} {
		if req.has(s.name) {
			v := req.get(s.name)
			*s.dst, changed = &v, true
		}
	}
	if req.tags != nil {
		u.Tags, changed = req.tags, true
	}
	return changed
}
