package httpd_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// An entry dated in the future (a device whose clock is decades ahead)
// is left out of reads that give no end, as ThingSpeak's reads end at the
// current time unless end says otherwise; it no longer stretches a
// default-window aggregation into more buckets than allowed (a 400).
func TestFutureDatedEntries(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Ahead", "", true, map[int]string{1: "v"})
	e.entry(ch.ID, now.Add(-2*time.Hour), map[int]string{0: "1", channels.Status: "a"})
	e.entry(ch.ID, now.Add(-time.Hour), map[int]string{0: "3", channels.Status: "b"})
	e.entry(ch.ID, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), map[int]string{0: "1000", channels.Status: "c"})
	e.entry(ch.ID, now.Add(time.Minute), map[int]string{0: "7", channels.Status: "d"}) // a minute ahead
	base := e.listen() + "/channels/1/"
	for _, c := range []struct {
		query string
		want  []int
	}{
		{"", []int{1, 2}},
		{"results=10", []int{1, 2}},
		{"days=1", []int{1, 2}},
		{"start=2026-11-22%2000:00:00", []int{1, 2}},
		{"end=2026-11-22%2012:01:00", []int{1, 2, 4}},
		{"results=10&end=2100-01-01", []int{1, 2, 4, 3}},
	} {
		for _, path := range []string{"feeds.json", "fields/1.json", "status.json"} {
			r := fetch(t, base+path+"?"+c.query)
			if got := ids(t, r); r.status != 200 || !slices.Equal(got, c.want) {
				t.Errorf("%s?%s: %d entries %v, want %v", path, c.query, r.status, got, c.want)
			}
		}
	}
	for path, want := range map[string]string{
		"feeds.csv?average=10":              "created_at,field1\n2026-11-22 10:00:00 UTC,1.0\n2026-11-22 10:10:00 UTC,\n2026-11-22 10:20:00 UTC,\n2026-11-22 10:30:00 UTC,\n2026-11-22 10:40:00 UTC,\n2026-11-22 10:50:00 UTC,\n2026-11-22 11:00:00 UTC,3.0\n",
		"feeds.csv?sum=60&days=1":           "created_at,field1\n2026-11-22 10:00:00 UTC,1.0\n2026-11-22 11:00:00 UTC,3.0\n",
		"feeds.xml?timescale=10":            "",
		"fields/1.csv?median=10&results=50": "",
	} {
		r := fetch(t, base+path)
		if r.status != 200 || (want != "" && r.body != want) {
			t.Errorf("%s: %d %q, want 200 %q", path, r.status, r.body, want)
		}
		if strings.Contains(r.body, "2100") {
			t.Errorf("%s: the future-dated entry is in the answer: %q", path, r.body)
		}
	}
	// An end far ahead reaches it, and ten-minute buckets up to 2100 are
	// too many, as before.
	if r := fetch(t, base+"feeds.json?average=10&end=2100-01-01"); r.status != 400 {
		t.Errorf("average=10 up to 2100: %d %s", r.status, r.body)
	}
}
