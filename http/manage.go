package httpd

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// The management API (APIOptions.Admin): ThingSpeak's channel settings
// API and feedmq's MQTT devices, with the owner's user API key in api_key
// (query string or body) or the THINGSPEAKAPIKEY header.
//
//	GET    /channels.json                    the owner's channels, with api_keys
//	GET    /channels/public.json             public channels, 15 a page (page=N), no key
//	POST   /channels.json                    create a channel
//	GET    /channels/<id>.json               settings; public channels without a key
//	PUT    /channels/<id>.json               change the settings given
//	DELETE /channels/<id>/feeds.json         clear the feed: [] (numbering restarts at 1)
//	DELETE /channels/<id>.json               delete; answers the channel as it was
//	GET    /mqtt/devices.json                devices
//	POST   /mqtt/devices.json                create a device: the answer holds its password
//	GET    /mqtt/devices/<id>.json           one device
//	PUT    /mqtt/devices/<id>.json           change name, description, channels, rules
//	DELETE /mqtt/devices/<id>.json           delete; answers the device as it was
//	POST   /mqtt/devices/<id>/reset_password.json  new password, in the answer only
//
// Channel parameters: name, description, field1..field8 (labels; "" turns
// a field off), latitude, longitude, elevation, metadata, tags
// (comma-separated, or a JSON array), url, public_flag (true or false).
// Device parameters: name, description, and channels: form values
// channel=ID[:pub|:sub|:pubsub] (or channels=; repeated; channel= alone
// for none) or a JSON array of {"id":1,"publish":true,"subscribe":false}
// objects or "1:pub" strings; and rules, the device's access rules on
// free topics: form values rule[]=ACCESS PATTERN (or rule= or rules=;
// repeated; one of them empty alone for none) or a JSON array of
// "ACCESS PATTERN" strings, ACCESS being read, write, readwrite or deny.
// A PUT changes only what it gives; channels replaces every grant, rules
// every rule. Bodies are form-encoded or JSON, at most
// MaxManageBody bytes.

// Management route kinds.
const (
	routeChannels    = iota + 100 // /channels.json
	routePublic                   // /channels/public.json
	routeChannel                  // /channels/<id>.json
	routeClear                    // DELETE /channels/<id>/feeds[.json]
	routeDevices                  // /mqtt/devices.json
	routeDevice                   // /mqtt/devices/<id>.json
	routeDeviceReset              // /mqtt/devices/<id>/reset_password.json
	routeChannelXML               // GET /channels/<id>.xml
)

// publicPerPage is how many channels a page of /channels/public.json
// holds, as on ThingSpeak.
const publicPerPage = 15

// manageMethods lists the methods of each management route.
var manageMethods = map[int][]string{
	routeChannels:    {http.MethodGet, http.MethodPost, http.MethodOptions},
	routePublic:      {http.MethodGet, http.MethodOptions},
	routeChannel:     {http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions},
	routeClear:       {http.MethodDelete, http.MethodOptions},
	routeDevices:     {http.MethodGet, http.MethodPost, http.MethodOptions},
	routeDevice:      {http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions},
	routeDeviceReset: {http.MethodPost, http.MethodOptions},
	routeChannelXML:  {http.MethodGet, http.MethodHead, http.MethodOptions},
}

// parseManageRoute maps a management path to its route; ok is false for
// other paths. The feeds path is a read route too: only DELETE clears.
func parseManageRoute(method, path string) (rt route, ok bool) {
	rt.format = "json"
	switch path {
	case "/channels.json":
		rt.kind = routeChannels
		return rt, true
	case "/channels/public.json":
		rt.kind = routePublic
		return rt, true
	case "/mqtt/devices.json":
		rt.kind = routeDevices
		return rt, true
	}
	if rest, found := strings.CutPrefix(path, "/channels/"); found {
		id, tail, hasTail := strings.Cut(rest, "/")
		switch {
		case !hasTail && strings.HasSuffix(id, ".json"):
			rt.kind = routeChannel
			id = strings.TrimSuffix(id, ".json")
		case !hasTail && strings.HasSuffix(id, ".xml"):
			rt.kind, rt.format = routeChannelXML, "xml"
			id = strings.TrimSuffix(id, ".xml")
		case method == http.MethodDelete && (tail == "feeds" || tail == "feeds.json"):
			rt.kind = routeClear
		default:
			return route{}, false // a read route, or none
		}
		if rt.channel, ok = parseResourceID(id); ok {
			return rt, true
		}
		return route{format: rt.format}, false
	}
	if rest, found := strings.CutPrefix(path, "/mqtt/devices/"); found {
		id, tail, hasTail := strings.Cut(rest, "/")
		switch {
		case !hasTail && strings.HasSuffix(id, ".json"):
			rt.kind = routeDevice
			id = strings.TrimSuffix(id, ".json")
		case tail == "reset_password.json":
			rt.kind = routeDeviceReset
		default:
			return route{format: "json"}, false
		}
		if rt.device, ok = parseResourceID(id); ok {
			return rt, true
		}
		return route{format: "json"}, false
	}
	return route{}, false
}

// parseResourceID parses a channel or device ID in a path, spelled as
// everywhere (channels.ParseID: no sign, no leading zero, fits 64 bits).
func parseResourceID(s string) (uint64, bool) {
	id, err := channels.ParseID(s)
	return id, err == nil
}

// manage serves a management route; the method is one of the route's.
func (h *handler) manage(w http.ResponseWriter, r *http.Request, rt route) {
	w.Header().Set("Cache-Control", "no-store")
	req, aerr := h.readManage(w, r)
	if aerr != nil {
		h.fail(w, r, manageFormat(r), aerr)
		return
	}
	key := req.get("api_key")
	if key == "" {
		key = headerKey(r)
	}
	switch rt.kind {
	case routePublic:
		h.publicChannels(w, r, req)
		return
	case routeChannel, routeChannelXML:
		if r.Method != http.MethodPut && r.Method != http.MethodDelete && key == "" {
			h.channelSettings(w, r, rt.channel, false)
			return
		}
	}
	if !h.ownerOK(w, r, key) {
		return
	}
	switch rt.kind {
	case routeChannels:
		if r.Method == http.MethodPost {
			h.createChannel(w, r, req)
		} else {
			h.ownerChannels(w, r, req)
		}
	case routeChannelXML:
		h.channelSettings(w, r, rt.channel, true)
	case routeChannel:
		switch r.Method {
		case http.MethodGet:
			h.channelSettings(w, r, rt.channel, true)
		case http.MethodPut:
			h.updateChannel(w, r, rt.channel, req)
		case http.MethodDelete:
			h.deleteChannel(w, r, rt.channel)
		}
	case routeClear:
		if err := h.opts.Admin.ClearChannel(r.Context(), rt.channel); err != nil {
			h.adminFailed(w, r, err)
			return
		}
		h.log.Info("http: channel cleared", "channel", rt.channel)
		writeBody(w, http.StatusOK, "application/json; charset=utf-8", []byte("[]"))
	case routeDevices:
		if r.Method == http.MethodPost {
			h.createDevice(w, r, req)
		} else {
			h.listDevices(w, r)
		}
	case routeDevice:
		switch r.Method {
		case http.MethodGet:
			h.showDevice(w, r, rt.device)
		case http.MethodPut:
			h.updateDevice(w, r, rt.device, req)
		case http.MethodDelete:
			h.deleteDevice(w, r, rt.device)
		}
	case routeDeviceReset:
		c, err := h.opts.Admin.ResetPassword(r.Context(), rt.device)
		if err != nil {
			h.adminFailed(w, r, err)
			return
		}
		h.log.Info("http: device password reset", "device", rt.device)
		writeJSON(w, auth.NewDeviceJSON(c.Device, c.Password))
	}
}

// ownerOK checks the user API key, answering the refusal when it is
// missing or wrong. A wrong key counts against the client's address; an
// address that gave too many gets 429 before its key is looked at.
func (h *handler) ownerOK(w http.ResponseWriter, r *http.Request, key string) bool {
	if key == "" {
		h.refuseKey(w, r, "no user API key", key)
		return false
	}
	if aerr := h.throttled(w, r); aerr != nil {
		h.fail(w, r, manageFormat(r), aerr)
		return false
	}
	err := h.opts.Admin.VerifyUserKey(r.Context(), key)
	switch {
	case err == nil:
		return true
	case channels.ErrorCode(err) == channels.EFORBIDDEN:
		h.keyFailed(r)
		reason := "wrong user API key"
		if !channels.ValidKey(key) {
			reason = "user API key of the wrong shape"
		}
		h.refuseKey(w, r, reason, key)
	default:
		h.adminFailed(w, r, err)
	}
	return false
}

// refuseKey answers 401 and logs the refusal once, with its reason and
// the key's length but never the key: a wrong key at info level (someone
// may be guessing), a missing one at debug (a client that forgot it).
func (h *handler) refuseKey(w http.ResponseWriter, r *http.Request, reason, key string) {
	level := slog.LevelInfo
	if key == "" {
		level = slog.LevelDebug
	}
	h.log.Log(r.Context(), level, "http: user API key refused", "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "reason", reason, "key", redactKey(key))
	h.answer(w, r, manageFormat(r), errAuth)
}

// redactKey describes a key for a log line without any of its
// characters.
func redactKey(key string) string {
	if key == "" {
		return "(none)"
	}
	return "(redacted, " + strconv.Itoa(len(key)) + " bytes)"
}

// adminFailed answers an error of the admin service by its code.
func (h *handler) adminFailed(w http.ResponseWriter, r *http.Request, err error) {
	msg := sentence(channels.ErrorMessage(err))
	var e *apiError
	switch channels.ErrorCode(err) {
	case channels.EINVALID:
		e = badRequest(msg)
	case channels.ENOTFOUND:
		e = notFound(msg)
	case channels.ECONFLICT:
		e = &apiError{http.StatusConflict, "error_conflict", "Conflict", msg}
	case channels.ELIMIT:
		// A self-hosted server's limits are the owner's settings, not a
		// plan to pay for (ThingSpeak's 402): a refusal that names the
		// limit to raise.
		e = &apiError{http.StatusForbidden, "error_limit_reached", "Limit Reached", msg}
	case channels.EFORBIDDEN:
		e = &apiError{http.StatusForbidden, "error_forbidden", "Forbidden", msg}
	default:
		if r.Context().Err() != nil {
			return // the client went away
		}
		h.log.Error("http: admin operation failed", "method", r.Method, "path", r.URL.Path, "error", err)
		e = errInternal
	}
	h.fail(w, r, manageFormat(r), e)
}

// manageFormat is the format of a management answer: XML for the one
// .xml path, else JSON.
func manageFormat(r *http.Request) string {
	if strings.HasSuffix(r.URL.Path, ".xml") {
		return "xml"
	}
	return "json"
}

// grantFailed answers an error of a device change: a grant naming a
// missing channel is bad input in the body (400), not a missing resource.
func (h *handler) grantFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, channels.ErrChannelNotFound) || errors.Is(err, auth.ErrUnknownChannel) {
		h.fail(w, r, "json", badRequest("channels: "+sentence(channels.ErrorMessage(err))))
		return
	}
	h.adminFailed(w, r, err)
}

// writeJSON answers 200 with v encoded as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types get here
		panic(err)
	}
	writeBody(w, http.StatusOK, "application/json; charset=utf-8", b)
}

// listDevices answers GET /mqtt/devices.json: every device with what
// the running broker knows of it (live connections, last publish), as
// `feedmq device list --json` shows them.
func (h *handler) listDevices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ds, err := h.opts.Admin.ListDevices(ctx)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	acts, err := h.opts.Admin.DeviceActivity(ctx)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	out := make([]auth.DeviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, auth.NewDeviceJSON(d, "").WithActivity(acts[d.ID]))
	}
	writeJSON(w, out)
}

// showDevice answers GET /mqtt/devices/<id>.json, with the device's
// activity as listDevices.
func (h *handler) showDevice(w http.ResponseWriter, r *http.Request, id uint64) {
	ctx := r.Context()
	d, err := h.opts.Admin.Device(ctx, id)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	acts, err := h.opts.Admin.DeviceActivity(ctx)
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	writeJSON(w, auth.NewDeviceJSON(d, "").WithActivity(acts[id]))
}

func (h *handler) createDevice(w http.ResponseWriter, r *http.Request, req *manageReq) {
	spec := auth.DeviceSpec{Name: req.get("name"), Description: req.get("description")}
	if req.grants != nil {
		spec.Grants = *req.grants
	}
	if req.rules != nil {
		spec.Rules = *req.rules
	}
	c, err := h.opts.Admin.CreateDevice(r.Context(), spec)
	if err != nil {
		h.grantFailed(w, r, err)
		return
	}
	h.log.Info("http: device created", "device", c.Device.ID)
	writeJSON(w, auth.NewDeviceJSON(c.Device, c.Password))
}

func (h *handler) updateDevice(w http.ResponseWriter, r *http.Request, id uint64, req *manageReq) {
	var u auth.DeviceUpdate
	changed := false
	if req.has("name") {
		name := req.get("name")
		u.Name, changed = &name, true
	}
	if req.has("description") {
		desc := req.get("description")
		u.Description, changed = &desc, true
	}
	if req.grants != nil {
		u.Grants, changed = req.grants, true
	}
	if req.rules != nil {
		u.Rules, changed = req.rules, true
	}
	var d *auth.Device
	var err error
	if changed {
		d, err = h.opts.Admin.UpdateDevice(r.Context(), id, u)
	} else {
		d, err = h.opts.Admin.Device(r.Context(), id)
	}
	if err != nil {
		h.grantFailed(w, r, err)
		return
	}
	if changed {
		h.log.Info("http: device updated", "device", id)
	}
	writeJSON(w, auth.NewDeviceJSON(d, ""))
}

func (h *handler) deleteDevice(w http.ResponseWriter, r *http.Request, id uint64) {
	ctx := r.Context()
	d, err := h.opts.Admin.Device(ctx, id)
	if err == nil {
		err = h.opts.Admin.DeleteDevice(ctx, id)
	}
	if err != nil {
		h.adminFailed(w, r, err)
		return
	}
	h.log.Info("http: device deleted", "device", id)
	writeJSON(w, auth.NewDeviceJSON(d, ""))
}
