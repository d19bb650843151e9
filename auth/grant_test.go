package auth_test

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

func TestParseGrant(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    auth.Grant
		wantErr string
	}{
		{in: "1", want: auth.Grant{ChannelID: 1, Publish: true, Subscribe: true}},
		{in: "7:pubsub", want: auth.Grant{ChannelID: 7, Publish: true, Subscribe: true}},
		{in: "12:pub", want: auth.Grant{ChannelID: 12, Publish: true}},
		{in: "3:sub", want: auth.Grant{ChannelID: 3, Subscribe: true}},
		{in: "18446744073709551615:sub", want: auth.Grant{ChannelID: 18446744073709551615, Subscribe: true}},
		{in: "", wantErr: "want ID, ID:pub, ID:sub or ID:pubsub"},
		{in: "0", wantErr: "want ID"},
		{in: "01", wantErr: "want ID"},
		{in: "-1", wantErr: "want ID"},
		{in: "+1", wantErr: "want ID"},
		{in: "18446744073709551616", wantErr: "want ID"},
		{in: "one", wantErr: "want ID"},
		{in: " 1", wantErr: "want ID"},
		{in: "1:", wantErr: "the suffix must be :pub, :sub or :pubsub"},
		{in: "1:rw", wantErr: "the suffix must be"},
		{in: "1:PUB", wantErr: "the suffix must be"},
		{in: "1:pub:sub", wantErr: "the suffix must be"},
		{in: "1:pub ", wantErr: "the suffix must be"},
	} {
		g, err := auth.ParseGrant(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || channels.ErrorCode(err) != channels.EINVALID {
				t.Errorf("ParseGrant(%q) = %+v, %v; want EINVALID containing %q", tc.in, g, err, tc.wantErr)
			}
			continue
		}
		if err != nil || g != tc.want {
			t.Errorf("ParseGrant(%q) = %+v, %v; want %+v", tc.in, g, err, tc.want)
		}
	}
}

func TestParseGrants(t *testing.T) {
	gs, err := auth.ParseGrants([]string{"1:pub", "2"})
	if err != nil || len(gs) != 2 || gs[0] != (auth.Grant{ChannelID: 1, Publish: true}) || !gs[1].Subscribe {
		t.Fatalf("ParseGrants = %+v, %v", gs, err)
	}
	if _, err := auth.ParseGrants([]string{"1:pub", "1:sub"}); err == nil || !strings.Contains(err.Error(), "channel 1 is given twice") {
		t.Errorf("duplicate channel: %v", err)
	}
	if _, err := auth.ParseGrants([]string{"1", "x"}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("bad second value: %v", err)
	}
	if gs, err := auth.ParseGrants(nil); err != nil || len(gs) != 0 {
		t.Errorf("no values: %+v, %v", gs, err)
	}
	// A long value from the network is cut short in the message.
	long := strings.Repeat("9", 5000)
	if _, err := auth.ParseGrant(long); err == nil || len(err.Error()) > 200 {
		t.Errorf("long value: error of %d bytes", len(err.Error()))
	}
}

func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"1", "2:pub", "3:sub", "4:pubsub", "0", "1:", "x:pub", "18446744073709551616", "1:pub:sub", "\xff:pub"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := auth.ParseGrant(s)
		if err != nil {
			if channels.ErrorCode(err) != channels.EINVALID {
				t.Fatalf("ParseGrant(%q): code %s", s, channels.ErrorCode(err))
			}
			if len(err.Error()) > 300 || !utf8.ValidString(err.Error()) {
				t.Fatalf("ParseGrant(%q): message of %d bytes or not UTF-8: %q", s, len(err.Error()), err.Error())
			}
			return
		}
		if g.ChannelID == 0 || (!g.Publish && !g.Subscribe) {
			t.Fatalf("ParseGrant(%q) = %+v", s, g)
		}
		// What parses prints back to the same grant.
		again := strconv.FormatUint(g.ChannelID, 10)
		switch {
		case g.Publish && !g.Subscribe:
			again += ":pub"
		case g.Subscribe && !g.Publish:
			again += ":sub"
		}
		if g2, err := auth.ParseGrant(again); err != nil || g2 != g {
			t.Fatalf("ParseGrant(%q) = %+v, but %q gives %+v, %v", s, g, again, g2, err)
		}
	})
}
