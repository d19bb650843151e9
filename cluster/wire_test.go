package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

func TestDecodeEntryRoundTrip(t *testing.T) {
	var e channels.Entry
	e.ChannelID, e.ID, e.CreatedAt = 42, 7, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	e.SetValue(0, "21.5")
	e.SetValue(2, "")
	e.SetValue(channels.Status, "quote \" backslash \\ newline \n é \u2028")
	e.SetValue(channels.Latitude, "-33.9")
	got, err := DecodeEntry(e.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got != e {
		t.Errorf("decoded %+v, want %+v", got, e)
	}
}

func TestDecodeEntry(t *testing.T) {
	const ts = `"created_at":"2024-01-02T03:04:05Z"`
	for _, tc := range []struct {
		in, err string
	}{
		{`{"channel_id":1,` + ts + `,"entry_id":2,"field1":"x","field2":null}`, ""},
		{`{"channel_id":1,` + ts + `,"entry_id":2,"unknown":"kept out"}`, ""},
		{``, "entry message"},
		{`null`, "channel_id"},
		{`{"channel_id":-1,` + ts + `,"entry_id":2}`, "entry message"},
		{`{"channel_id":1,` + ts + `,"entry_id":18446744073709551616}`, "entry message"},
		{`{"channel_id":1,` + ts + `}`, "entry_id"},
		{`{"channel_id":1,"created_at":"2024-01-02 03:04:05","entry_id":2}`, "created_at"},
		{`{"channel_id":1,"created_at":"2024-01-02T03:04:05+02:00","entry_id":2}`, "created_at"},
		{`{"channel_id":1,` + ts + `,"entry_id":2,"field9":"x"}`, ""},
		{`{"channel_id":1,` + ts + `,"entry_id":2,"field1":["x"]}`, "entry message"},
		{`{"channel_id":1,` + ts + `,"entry_id":2,"field1":"` + strings.Repeat("x", MaxMessage) + `"}`, "over"},
	} {
		_, err := DecodeEntry([]byte(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("DecodeEntry(%.60q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("DecodeEntry(%.60q): %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

func TestDecodeNotice(t *testing.T) {
	at := time.Unix(1_700_000_000, 123456789).UTC()
	for _, want := range []Notice{{ClientID: "dev \"1\"", Node: "node-2", At: at}, {ClientID: "a", Node: "n"}} {
		n, err := DecodeNotice(encodeNotice(want))
		if err != nil || n != want {
			t.Fatalf("round trip of %+v: %+v %v", want, n, err)
		}
	}
	// A notice from a node that does not send the time still decodes.
	if n, err := DecodeNotice([]byte(`{"client_id":"a","node":"n"}`)); err != nil || !n.At.IsZero() {
		t.Errorf("notice without connected_at: %+v %v", n, err)
	}
	for _, in := range []string{
		`{"client_id":"a","node":"n","connected_at":"yesterday"}`,
		`{"client_id":"a","node":"n","connected_at":"1969-12-31T23:59:59Z"}`,
		`{"client_id":"a","node":"n","connected_at":12}`,
		``, `{}`, `{"client_id":"a"}`, `{"client_id":"","node":"n"}`, `{"client_id":"a","node":"n.x"}`,
		`{"client_id":"a","node":"` + strings.Repeat("n", MaxNameLen+1) + `"}`,
		`{"client_id":"` + strings.Repeat("c", maxClientID+1) + `","node":"n"}`,
		`{"client_id":1,"node":"n"}`,
	} {
		if _, err := DecodeNotice([]byte(in)); err == nil {
			t.Errorf("DecodeNotice(%.60q) accepted", in)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "feedmq", "node-1", "N_2", strings.Repeat("x", MaxNameLen)} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "é", "a\x00", strings.Repeat("x", MaxNameLen+1)} {
		if ValidName(bad) == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

// FuzzDecodeMessage: any message from NATS is refused or decodes to an entry
// that encodes and decodes to itself.
func FuzzDecodeMessage(f *testing.F) {
	var e channels.Entry
	e.ChannelID, e.ID, e.CreatedAt = 1, 2, time.Unix(1_700_000_000, 0).UTC()
	e.SetValue(3, "v")
	f.Add(e.AppendJSON(nil))
	f.Add([]byte(`{"channel_id":1,"created_at":"2024-01-02T03:04:05Z","entry_id":2,"status":"\ud800"}`))
	f.Add([]byte(`{"client_id":"a","node":"b"}`))
	f.Add([]byte(`{"client_id":"a","node":"b","connected_at":"2026-01-02T03:04:05.1+01:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := DecodeNotice(b); err == nil {
			again, err := DecodeNotice(encodeNotice(n))
			if err != nil || again.ClientID != n.ClientID || again.Node != n.Node || !again.At.Equal(n.At) {
				t.Fatalf("notice %+v encodes to one that decodes to %+v, %v", n, again, err)
			}
		}
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		again, err := DecodeEntry(e.AppendJSON(nil))
		if err != nil || again != e {
			t.Fatalf("%q decoded to %+v, which round-trips to %+v, %v", b, e, again, err)
		}
	})
}
