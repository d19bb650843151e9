package httpd_test

import (
	"testing"
	"time"
)

// A feed cleared while a resumed event stream is open (EventSource
// resumes with Last-Event-ID after every reconnect) restarts its
// numbering at 1: the stream goes on delivering the new entries, rather
// than dropping every one up to the old last entry_id as a duplicate of
// its replay.
func TestEventsResumedAcrossClear(t *testing.T) {
	e := newDashEnv(t, time.Hour)
	ch := e.channel(true)
	for _, v := range []string{"1", "2", "3"} {
		e.publish(ch.ID, v)
	}
	for i, hdr := range [][]string{{"Last-Event-ID", "3"}, {"Last-Event-ID", "1"}} {
		s := e.open("/channels/1/events", hdr...)
		s.skipTo(": stream")
		if hdr[1] == "1" {
			s.skipTo("id: 3") // the replay
		}
		waitWatchers(t, e.srv, i+1)
		if err := e.svc.ClearChannel(t.Context(), ch.ID); err != nil {
			t.Fatal(err)
		}
		want := e.publish(ch.ID, "after the clear")
		if l := s.skipTo("id: "); l != "id: 1" {
			t.Fatalf("Last-Event-ID %s: got %q, want id: 1", hdr[1], l)
		}
		if l := s.next(); l != "data: "+want {
			t.Fatalf("got %q\nwant data: %s", l, want)
		}
		e.publish(ch.ID, "2") // so that the next round's resume replays
		e.publish(ch.ID, "3")
	}
}
