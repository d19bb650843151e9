package httpd

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// channelRow is one line of the channel list.
type channelRow struct {
	*channels.Channel
	LastEntryAt time.Time
	Entries     uint64
}

// channelForm is the channel form's values, as typed.
type channelForm struct {
	ID                             uint64 // 0 for a new channel
	Name, Description              string
	Fields                         [channels.NumFields]string
	Public                         bool
	Latitude, Longitude, Elevation string
	Metadata, Tags, URL            string
	// Settings page only.
	WriteKey, ReadKey string
	LastEntryID       uint64
	Entries           uint64
	ImportID          string // one-time id of the Import CSV form
}

// entryCount is the number of entries ch holds. Retention and imports
// with gaps make it smaller than the last entry_id, which stands in only
// when the store cannot count.
func (c *Console) entryCount(q *req, ch *channels.Channel) uint64 {
	if ch.LastEntryID == 0 {
		return 0
	}
	if counter, ok := c.opts.Feeds.(channels.EntryCounter); ok {
		if n, err := counter.EntryCount(q.ctx(), ch.ID); err == nil {
			return n
		}
	}
	return ch.LastEntryID
}

func (c *Console) channelRoutes(q *req, rest []string) bool {
	switch {
	case len(rest) == 0 || (len(rest) == 1 && rest[0] == ""):
		if q.post() {
			return false
		}
		c.channelList(q)
	case len(rest) == 1 && rest[0] == "new":
		c.newChannel(q)
	default:
		id, ok := pathID(rest[0])
		if !ok || len(rest) > 2 {
			return false
		}
		ch, err := c.opts.Admin.Channel(q.ctx(), id)
		if err != nil {
			c.adminError(q, err)
			return true
		}
		if len(rest) == 1 {
			c.channelSettings(q, ch)
			return true
		}
		switch rest[1] {
		case "keys":
			c.regenerateKey(q, ch)
		case "clear":
			c.clearChannel(q, ch)
		case "delete":
			c.deleteChannel(q, ch)
		case "import":
			// Uploads are POSTs, served before routing (importUpload);
			// a GET (a reload of the answer's address) shows the form.
			http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID), http.StatusSeeOther)
		default:
			return false
		}
	}
	return true
}

func (c *Console) channelList(q *req) {
	list, err := c.opts.Admin.ListChannels(q.ctx())
	if err != nil {
		c.adminError(q, err)
		return
	}
	rows := make([]channelRow, len(list))
	for i, ch := range list {
		rows[i].Channel = ch
		rows[i].Entries = c.entryCount(q, ch)
		if c.opts.Feeds != nil && ch.LastEntryID > 0 {
			if e, err := c.opts.Feeds.FindEntry(q.ctx(), ch.ID, ch.LastEntryID); err == nil {
				rows[i].LastEntryAt = e.CreatedAt
			}
		}
	}
	c.render(q, http.StatusOK, "channels", page{Title: "Channels", Nav: "channels", Data: rows})
}

// readChannelForm reads the channel form of a POST.
func readChannelForm(q *req) channelForm {
	f := channelForm{
		Name: strings.TrimSpace(q.form("name")), Description: q.form("description"),
		Public:   q.form("public") == "on",
		Latitude: strings.TrimSpace(q.form("latitude")), Longitude: strings.TrimSpace(q.form("longitude")),
		Elevation: strings.TrimSpace(q.form("elevation")),
		Metadata:  q.form("metadata"), Tags: q.form("tags"), URL: strings.TrimSpace(q.form("url")),
	}
	for i := range f.Fields {
		f.Fields[i] = strings.TrimSpace(q.form("field" + strconv.Itoa(i+1)))
	}
	return f
}

// formTags turns "a, b,,c" into [a b c].
func formTags(s string) []string {
	tags := []string{}
	for t := range strings.SplitSeq(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

func formOf(ch *channels.Channel) channelForm {
	return channelForm{
		ID: ch.ID, Name: ch.Name, Description: ch.Description, Fields: ch.Fields, Public: ch.Public,
		Latitude: ch.Latitude, Longitude: ch.Longitude, Elevation: ch.Elevation,
		Metadata: ch.Metadata, Tags: strings.Join(ch.Tags, ", "), URL: ch.URL,
		WriteKey: ch.WriteKey, ReadKey: ch.ReadKey, LastEntryID: ch.LastEntryID,
		ImportID: randomToken(),
	}
}

func (c *Console) newChannel(q *req) {
	if !q.post() {
		f := channelForm{Fields: [channels.NumFields]string{"Field 1"}}
		c.render(q, http.StatusOK, "channel", page{Title: "New channel", Nav: "channels", Data: f})
		return
	}
	f := readChannelForm(q)
	// The service gives a spec without labels all eight default fields
	// (the CLI's channel create without --field); the form says an empty
	// label turns a field off.
	if f.Fields == ([channels.NumFields]string{}) {
		c.render(q, http.StatusBadRequest, "channel", page{Title: "New channel", Nav: "channels", Error: "Give at least one field a label: a channel needs at least one field.", Data: f})
		return
	}
	ch, err := c.opts.Admin.CreateChannel(q.ctx(), f.spec())
	if err != nil {
		if status, ok := formError(err); ok {
			c.render(q, status, "channel", page{Title: "New channel", Nav: "channels", Error: errText(err), Data: f})
			return
		}
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID)+"?done=created", http.StatusSeeOther)
}

func (c *Console) channelSettings(q *req, ch *channels.Channel) {
	title := "Channel settings"
	if !q.post() {
		f := formOf(ch)
		f.Entries = c.entryCount(q, ch)
		c.render(q, http.StatusOK, "channel", page{Title: title, Nav: "channels", Data: f})
		return
	}
	f := readChannelForm(q)
	if _, err := c.opts.Admin.UpdateChannel(q.ctx(), ch.ID, f.update()); err != nil {
		if status, ok := formError(err); ok {
			keep := formOf(ch)
			f.ID, f.WriteKey, f.ReadKey, f.LastEntryID, f.ImportID = keep.ID, keep.WriteKey, keep.ReadKey, keep.LastEntryID, keep.ImportID
			f.Entries = c.entryCount(q, ch)
			c.render(q, status, "channel", page{Title: title, Nav: "channels", Error: errText(err), Data: f})
			return
		}
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID)+"?done=saved", http.StatusSeeOther)
}

// spec is the form as a new channel. Empty location and URL fields are
// left unset.
func (f channelForm) spec() auth.ChannelSpec {
	s := auth.ChannelSpec{Name: f.Name, Description: f.Description, Fields: f.Fields, Public: f.Public}
	f.applySettings(&s)
	return s
}

// update is the form as a change of every setting it shows.
func (f channelForm) update() auth.ChannelUpdate {
	u := auth.ChannelUpdate{Name: &f.Name, Description: &f.Description, Public: &f.Public, Fields: make(map[int]string, channels.NumFields)}
	for i, l := range f.Fields {
		u.Fields[i+1] = l
	}
	f.applyUpdate(&u)
	return u
}

func (c *Console) regenerateKey(q *req, ch *channels.Channel) {
	if !q.post() {
		http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID), http.StatusSeeOther)
		return
	}
	var write bool
	switch q.form("key") {
	case "write":
		write = true
	case "read":
	default:
		c.message(q, http.StatusBadRequest, "Not accepted", "Say which key to regenerate: key=write or key=read.")
		return
	}
	if _, err := c.opts.Admin.RegenerateKey(q.ctx(), ch.ID, write); err != nil {
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID)+"?done=key", http.StatusSeeOther)
}

func (c *Console) clearChannel(q *req, ch *channels.Channel) {
	if !confirmed(q) {
		c.confirm(q, "Clear feed", confirmData{
			Heading: "Clear the feed of " + ch.Name + "?",
			Text:    "All " + strconv.FormatUint(c.entryCount(q, ch), 10) + " entries of channel " + strconv.FormatUint(ch.ID, 10) + " are deleted; the next entry is number 1. The channel, its keys and its devices stay.",
			Action:  idPath("/console/channels/", ch.ID) + "/clear", Check: "Yes, delete every entry of this channel",
			Button: "Clear feed", Cancel: idPath("/console/channels/", ch.ID),
		})
		return
	}
	if err := c.opts.Admin.ClearChannel(q.ctx(), ch.ID); err != nil {
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, idPath("/console/channels/", ch.ID)+"?done=cleared", http.StatusSeeOther)
}

func (c *Console) deleteChannel(q *req, ch *channels.Channel) {
	if !confirmed(q) {
		c.confirm(q, "Delete channel", confirmData{
			Heading: "Delete channel " + ch.Name + "?",
			Text:    "Channel " + strconv.FormatUint(ch.ID, 10) + ", its feed and every device's right on it are deleted. This cannot be undone.",
			Action:  idPath("/console/channels/", ch.ID) + "/delete", Check: "Yes, delete this channel and its data",
			Button: "Delete channel", Cancel: idPath("/console/channels/", ch.ID),
		})
		return
	}
	if err := c.opts.Admin.DeleteChannel(q.ctx(), ch.ID); err != nil {
		c.adminError(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/console/channels?done=deleted", http.StatusSeeOther)
}
