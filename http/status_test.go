package httpd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// TestStatus checks status.json/.csv/.xml (the channel's name and
// location, entries with created_at, entry_id and status) and
// status/last.json/.txt/.xml.
func TestStatus(t *testing.T) {
	w := newWeather(t)
	w.get(w.url("status.json")).want(t, 200, ctJSON, `{"channel":{"name":"Weather"},"feeds":[`+
		`{"created_at":"2026-11-22T10:00:00Z","entry_id":1,"status":null},`+
		`{"created_at":"2026-11-22T10:15:00Z","entry_id":2,"status":"ok"},`+
		`{"created_at":"2026-11-22T10:30:00Z","entry_id":3,"status":null},`+
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"status":null}]}`)
	w.get(w.url("status.json", "results=1", "callback=cb")).want(t, 200, "application/javascript", `/**/cb({"channel":{"name":"Weather"},"feeds":[`+
		`{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"status":null}]})`)
	w.get(w.url("status.csv", "start=2026-11-22%2010:15:00", "end=2026-11-22%2010:15:00")).want(t, 200, ctCSV,
		"created_at,entry_id,status\n2026-11-22 10:15:00 UTC,2,ok\n")
	w.get(w.url("status.xml", "results=2", "offset=1")).want(t, 200, ctXML, xmlHead+`<channel>
  <name>Weather</name>
  <feeds type="array">
    <feed>
      <created-at type="dateTime">2026-11-22T11:30:00+01:00</created-at>
      <entry-id type="integer">3</entry-id>
      <status nil="true"></status>
    </feed>
    <feed>
      <created-at type="dateTime">2026-11-22T12:00:00+01:00</created-at>
      <entry-id type="integer">4</entry-id>
      <status nil="true"></status>
    </feed>
  </feeds>
</channel>
`)

	// The last entry's status, whatever it is: null, bare "" in text.
	w.get(w.url("status/last.json")).want(t, 200, ctJSON, `{"created_at":"2026-11-22T11:00:00Z","entry_id":4,"status":null}`)
	w.get(w.url("status/last.txt")).want(t, 200, ctText, "")
	w.entry(w.ch.ID, at(11, 30, 0), map[int]string{channels.Status: "door <open> & \"locked\""})
	w.get(w.url("status/last.json")).want(t, 200, ctJSON, `{"created_at":"2026-11-22T11:30:00Z","entry_id":5,"status":"door <open> & \"locked\""}`)
	w.get(w.url("status/last.txt")).want(t, 200, ctText, `door <open> & "locked"`)
	w.get(w.url("status/last.xml")).want(t, 200, ctXML, xmlHead+`<feed>
  <created-at type="dateTime">2026-11-22T11:30:00Z</created-at>
  <entry-id type="integer">5</entry-id>
  <status>door &lt;open&gt; &amp; &#34;locked&#34;</status>
</feed>
`)

	// Private: the read key is needed.
	id := "/channels/1/"
	for _, p := range []string{"status.json", "status/last.json", "status/last.txt"} {
		if r := w.get(id + p); r.status != 401 {
			t.Errorf("%s without key: %d %s", p, r.status, r.body)
		}
		if r := w.get(id + p + "?api_key=" + w.ch.WriteKey); r.status != 401 {
			t.Errorf("%s with the write key: %d %s", p, r.status, r.body)
		}
		if r := w.get("/channels/2/" + p + "?api_key=" + w.ch.ReadKey); r.status != 404 {
			t.Errorf("%s of another channel: %d %s", p, r.status, r.body)
		}
	}
}

// TestStatusWindow checks ThingSpeak's status window: as if days=1 were
// given, so the last day and up to 8000 entries; days, minutes and start
// widen it.
func TestStatusWindow(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("S", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, now.Add(-30*time.Hour), map[int]string{channels.Status: "old"})
	for i := range 150 {
		e.entry(ch.ID, now.Add(-time.Duration(150-i)*time.Minute), map[int]string{channels.Status: "s"})
	}
	for _, c := range []struct {
		query       string
		n           int
		first, last int
	}{
		{"", 150, 2, 151}, // more than 100, none older than a day
		{"results=8000", 150, 2, 151},
		{"results=3", 3, 149, 151},
		{"days=2", 151, 1, 151},
		{"minutes=2000", 151, 1, 151},
		{"start=2026-11-01", 151, 1, 151},
		// ThingSpeak's status read takes no bucket, value filter or
		// rounding parameter: statuses are never averaged away.
		{"results=3&average=60", 3, 149, 151},
		{"results=3&timescale=10", 3, 149, 151},
		{"results=3&median=daily", 3, 149, 151},
	} {
		got := ids(t, e.get("/channels/1/status.json?"+c.query))
		if len(got) != c.n || got[0] != c.first || got[len(got)-1] != c.last {
			t.Errorf("status.json?%s: %d entries from %v, want %d from %d to %d", c.query, len(got), got[:min(3, len(got))], c.n, c.first, c.last)
		}
	}
}

// TestMetadataAndLocation checks metadata=true (the channel's metadata
// after last_entry_id, null when unset) and the channel's location in
// the channel object, in JSON and XML.
func TestMetadataAndLocation(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Meta", "", true, map[int]string{1: "v"})
	e.get("/channels/1/feeds.json?metadata=true&results=0").want(t, 200, ctJSON,
		`{"channel":{"id":1,"name":"Meta","field1":"v","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","last_entry_id":null,"metadata":null},"feeds":[]}`)
	c, err := e.svc.Channel(context.Background(), ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.Metadata = `{"room":"<kitchen>"}` + "\n"
	c.Latitude, c.Longitude, c.Elevation = "52.5", "-13.25", "34"
	if err := e.db.UpdateChannel(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	e.get("/channels/1/feeds.json?metadata=true&results=0").want(t, 200, ctJSON,
		`{"channel":{"id":1,"name":"Meta","latitude":"52.5","longitude":"-13.25","field1":"v","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","elevation":"34","last_entry_id":null,"metadata":"{\"room\":\"<kitchen>\"}\n"},"feeds":[]}`)
	e.get("/channels/1/fields/1.json?metadata=false&results=0").want(t, 200, ctJSON,
		`{"channel":{"id":1,"name":"Meta","latitude":"52.5","longitude":"-13.25","field1":"v","created_at":"2026-11-01T09:00:00Z","updated_at":"2026-11-01T09:00:00Z","elevation":"34","last_entry_id":null},"feeds":[]}`)
	e.get("/channels/1/feeds.xml?metadata=true&results=0").want(t, 200, ctXML, xmlHead+`<channel>
  <id type="integer">1</id>
  <name>Meta</name>
  <latitude type="decimal">52.5</latitude>
  <longitude type="decimal">-13.25</longitude>
  <field1>v</field1>
  <created-at type="dateTime">2026-11-01T09:00:00Z</created-at>
  <updated-at type="dateTime">2026-11-01T09:00:00Z</updated-at>
  <elevation>34</elevation>
  <last-entry-id type="integer" nil="true"></last-entry-id>
  <metadata>{&#34;room&#34;:&#34;&lt;kitchen&gt;&#34;}
</metadata>
  <feeds type="array"></feeds>
</channel>
`)
	e.get("/channels/1/status.json").want(t, 200, ctJSON,
		`{"channel":{"name":"Meta","latitude":"52.5","longitude":"-13.25","elevation":"34"},"feeds":[]}`)
	// CSV has no channel object.
	if r := e.get("/channels/1/feeds.csv?metadata=true"); r.status != 200 || strings.Contains(r.body, "kitchen") {
		t.Errorf("feeds.csv?metadata=true: %d %s", r.status, r.body)
	}
}

// blockingStore holds every Entries call until release is closed. It
// is no TimePager, so feed reads go through Entries.
type blockingStore struct {
	channels.Store
	entered chan struct{}
	release chan struct{}
}

func (s blockingStore) Entries(ctx context.Context, id uint64, f channels.EntryFilter) ([]channels.Entry, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Entries(ctx, id, f)
}

// TestStatusCountsAsFeedRead checks that status reads and XML feed reads
// take a slot of MaxFeedReads like feeds.json, so a flood of them gets
// 503, in the format asked for.
func TestStatusCountsAsFeedRead(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	e.channel("S", "", true, map[int]string{1: "v"})
	bs := blockingStore{Store: e.db, entered: make(chan struct{}), release: make(chan struct{})}
	e.h = httpd.NewAPI(httpd.APIOptions{Store: bs, Registry: e.svc.Registry, Publisher: e.pub, MaxFeedReads: 1,
		Now: func() time.Time { return now }})
	done := make(chan response)
	go func() { done <- e.get("/channels/1/status.json") }()
	select { // the first read holds the only slot
	case <-bs.entered:
	case r := <-done:
		t.Fatalf("the first read did not reach the store: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/channels/1/status.json", "/channels/1/status.xml", "/channels/1/feeds.xml"} {
		r := e.get(p)
		if r.status != 503 || r.header.Get("Retry-After") != "1" || !strings.Contains(r.body, "error_busy") {
			t.Errorf("%s while busy: %d %s", p, r.status, r.body)
		}
	}
	if r := e.get("/channels/1/status.xml"); !strings.HasPrefix(r.header.Get("Content-Type"), ctXML) {
		t.Errorf("busy status.xml answered %s", r.header.Get("Content-Type"))
	}
	close(bs.release)
	if r := <-done; r.status != 200 {
		t.Errorf("first read: %d %s", r.status, r.body)
	}
}
