package httpd_test

import (
	"strings"
	"testing"
)

// The dashboard's refusals (its channel list and event streams, which
// share the API's key throttle) are counted with the API's, so that
// /metrics shows every request the HTTP listener refused: a wrong read
// key on /channels/<id>/events as much as one on feeds.json.
func TestDashboardRefusalsCounted(t *testing.T) {
	m := newMgmt(t, mgmtOptions{})
	m.createChannel("name=Private")
	for range 2 {
		if r := m.do("GET", "/channels/1/events?api_key=WRONGWRONGWRONG1", ""); r.status != 401 {
			t.Fatalf("events with a wrong key: %d %s", r.status, r.body)
		}
	}
	if r := m.do("GET", "/channels/9/events", ""); r.status != 404 {
		t.Fatalf("events of a missing channel: %d", r.status)
	}
	if r := m.do("POST", "/channels/1/events", ""); r.status != 405 {
		t.Fatalf("POST events: %d", r.status)
	}
	keys := strings.Repeat("api_key=K&", 40)
	if r := m.do("GET", "/dashboard/channels.json?"+keys, ""); r.status != 400 {
		t.Fatalf("dashboard list with 40 keys: %d", r.status)
	}
	got := m.srv.Refusals().Snapshot()
	for reason, n := range map[string]uint64{"auth_required": 2, "resource_not_found": 1, "method_invalid": 1, "bad_request": 1} {
		if got[reason] != n {
			t.Errorf("refusals[%s] = %d, want %d (all: %v)", reason, got[reason], n, got)
		}
	}
}
