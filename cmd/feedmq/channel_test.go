package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
)

var apiKeyRE = regexp.MustCompile(`^[A-Z0-9]{16}$`)

func TestChannelCreate(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		t.Run("JSONShape", func(t *testing.T) {
			var got map[string]any
			mustJSON(t, dir, &got, "channel", "create", "--name", "Weather", "--description", "roof",
				"--field", "1=Temperature", "--field", "3=Wind, gusts", "--public", "--json")
			want := []string{"created_at", "description", "fields", "id", "last_entry_id", "name", "public", "read_api_key", "write_api_key"}
			if k := keys(got); !reflect.DeepEqual(k, want) {
				t.Fatalf("keys %v, want %v", k, want)
			}
			if got["id"] != 1.0 || got["name"] != "Weather" || got["description"] != "roof" || got["public"] != true {
				t.Fatalf("got %v", got)
			}
			fields := map[string]any{"field1": "Temperature", "field3": "Wind, gusts"}
			if !reflect.DeepEqual(got["fields"], fields) {
				t.Fatalf("fields %v, want %v", got["fields"], fields)
			}
			for _, k := range []string{"write_api_key", "read_api_key"} {
				if s, _ := got[k].(string); !apiKeyRE.MatchString(s) {
					t.Fatalf("%s = %q", k, got[k])
				}
			}
			if s, _ := got["created_at"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(s) {
				t.Fatalf("created_at = %q", s)
			}
		})
		t.Run("DefaultFields", func(t *testing.T) {
			var got channelJSON
			mustJSON(t, dir, &got, "channel", "create", "--name", "All", "--json")
			if len(got.Fields) != 8 || got.Fields["field8"] != "Field 8" || got.Public {
				t.Fatalf("got %+v", got)
			}
		})
		t.Run("Table", func(t *testing.T) {
			out := mustRun(t, dir, "channel", "create", "--name", "Plain", "--field", "2=Hum")
			for _, want := range []string{"Name:", "Plain", "Write API key:", "field2:", "Hum"} {
				if !strings.Contains(out, want) {
					t.Fatalf("output lacks %q:\n%s", want, out)
				}
			}
		})
		t.Run("Errors", func(t *testing.T) {
			for _, tt := range []struct{ args, want string }{
				{"channel create", "--name is required"},
				{"channel create --name x --field 9=Nine", "field number must be from 1 to 8"},
				{"channel create --name x --field one=One", "want N=LABEL"},
				{"channel create --name x --field 1=", "give a label"},
				{"channel create --name x --field 1=a --field 1=b", "--field 1 is given twice"},
			} {
				if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
					t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
				}
			}
		})
	})
}

func TestChannelListShow(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "Gone")
		mustRun(t, dir, "channel", "delete", "1")
		var empty []channelJSON
		if mustJSON(t, dir, &empty, "channel", "list", "--json"); empty == nil || len(empty) != 0 {
			t.Fatalf("empty list: %v", empty)
		}
		if out := mustRun(t, dir, "channel", "list"); out != "ID  NAME  PUBLIC  FIELDS  LAST ENTRY  CREATED\n" {
			t.Fatalf("empty table %q", out)
		}
		mustRun(t, dir, "channel", "create", "--name", "One")
		mustRun(t, dir, "channel", "create", "--name", "Two", "--public")

		var list []map[string]any
		mustJSON(t, dir, &list, "channel", "list", "--json")
		if len(list) != 2 || list[0]["name"] != "One" || list[1]["name"] != "Two" {
			t.Fatalf("got %v", list)
		}
		out := mustRun(t, dir, "channel", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[2], "Two") || !strings.Contains(lines[2], "yes") {
			t.Fatalf("table:\n%s", out)
		}

		var one channelJSON
		mustJSON(t, dir, &one, "channel", "show", "2", "--json")
		if one.ID != 2 || one.Name != "One" {
			t.Fatalf("got %+v", one)
		}
		want := "channel 9 not found; see `feedmq channel list`"
		if got := mustFail(t, dir, "channel", "show", "9"); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func TestChannelUpdate(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "Old", "--field", "1=A", "--field", "2=B", "--public")
		var got channelJSON
		mustJSON(t, dir, &got, "channel", "update", "1", "--name", "New", "--field", "2=", "--field", "5=E", "--public=false", "--json")
		want := map[string]string{"field1": "A", "field5": "E"}
		if got.Name != "New" || got.Public || !reflect.DeepEqual(got.Fields, want) {
			t.Fatalf("got %+v", got)
		}
		// Flags not given leave settings alone.
		mustJSON(t, dir, &got, "channel", "update", "1", "--description", "d", "--json")
		if got.Name != "New" || got.Description != "d" || !reflect.DeepEqual(got.Fields, want) {
			t.Fatalf("got %+v", got)
		}
		for _, tt := range []struct{ args, want string }{
			{"channel update 1", "nothing to update"},
			{"channel update 1 --field 0=x", "field number must be from 1 to 8"},
			{"channel update 1 --field 1= --field 5=", "at least one enabled field"},
			{"channel update 7 --name x", "channel 7 not found; see `feedmq channel list`"},
		} {
			if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
			}
		}
	})
}

func TestChannelRegenerateKey(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		var before, after channelJSON
		mustJSON(t, dir, &before, "channel", "create", "--name", "K", "--json")
		mustJSON(t, dir, &after, "channel", "regenerate-key", "1", "--write", "--json")
		if after.WriteAPIKey == before.WriteAPIKey || after.ReadAPIKey != before.ReadAPIKey {
			t.Fatalf("before %+v after %+v", before, after)
		}
		out := mustRun(t, dir, "channel", "regenerate-key", "1", "--read")
		if !regexp.MustCompile(`^New read API key of channel 1: [A-Z0-9]{16}\n$`).MatchString(out) {
			t.Fatalf("got %q", out)
		}
		for _, args := range []string{"channel regenerate-key 1", "channel regenerate-key 1 --write --read"} {
			if got := mustFail(t, dir, strings.Fields(args)...); got != "give exactly one of --write and --read" {
				t.Errorf("%s: got %q", args, got)
			}
		}
	})
}

func TestChannelDeleteClear(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "A")
		mustRun(t, dir, "channel", "create", "--name", "B")
		mustRun(t, dir, "device", "create", "--name", "d", "--channel", "1", "--channel", "2:sub")

		if out := mustRun(t, dir, "channel", "clear", "1"); out != "Channel 1 cleared; entry IDs restart at 1.\n" {
			t.Fatalf("got %q", out)
		}
		var done map[string]any
		mustJSON(t, dir, &done, "channel", "delete", "1", "--json")
		if !reflect.DeepEqual(done, map[string]any{"id": 1.0, "deleted": true}) {
			t.Fatalf("got %v", done)
		}
		// The device lost its grant to the deleted channel.
		var d auth.DeviceJSON
		mustJSON(t, dir, &d, "device", "show", "1", "--json")
		if len(d.Channels) != 1 || d.Channels[0].ChannelID != 2 {
			t.Fatalf("grants after delete: %+v", d.Channels)
		}
		for _, args := range []string{"channel delete 1", "channel clear 1"} {
			if got := mustFail(t, dir, strings.Fields(args)...); got != "channel 1 not found; see `feedmq channel list`" {
				t.Errorf("%s: got %q", args, got)
			}
		}
	})
}

func TestChannelSettings(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		var got map[string]any
		mustJSON(t, dir, &got, "channel", "create", "--name", "Roof", "--latitude", "52.5163", "--longitude", " 13.3777",
			"--elevation", "34", "--metadata", "{\"a\":1}\nline 2", "--tags", "weather, roof,,weather", "--url", "https://example.com/roof", "--json")
		want := []string{"created_at", "description", "elevation", "fields", "id", "last_entry_id", "latitude", "longitude",
			"metadata", "name", "public", "read_api_key", "tags", "url", "write_api_key"}
		if k := keys(got); !reflect.DeepEqual(k, want) {
			t.Fatalf("keys %v, want %v", k, want)
		}
		if got["latitude"] != "52.5163" || got["longitude"] != "13.3777" || got["elevation"] != "34" ||
			got["metadata"] != "{\"a\":1}\nline 2" || !reflect.DeepEqual(got["tags"], []any{"weather", "roof"}) ||
			got["url"] != "https://example.com/roof" {
			t.Fatalf("got %v", got)
		}

		out := mustRun(t, dir, "channel", "show", "1")
		for _, want := range []string{"Latitude:", "52.5163", "Longitude:", "13.3777", "Elevation:", "34",
			"Tags:", "weather, roof", "URL:", "https://example.com/roof", `Metadata:`, `"{\"a\":1}\nline 2"`} {
			if !strings.Contains(out, want) {
				t.Fatalf("show lacks %q:\n%s", want, out)
			}
		}

		// Update changes only what it is given; "" unsets.
		var c channelJSON
		mustJSON(t, dir, &c, "channel", "update", "1", "--latitude", "-33.9", "--tags", "a,b", "--json")
		if c.Latitude != "-33.9" || c.Longitude != "13.3777" || !reflect.DeepEqual(c.Tags, []string{"a", "b"}) || c.URL != "https://example.com/roof" {
			t.Fatalf("after update %+v", c)
		}
		c = channelJSON{} // decoding leaves keys that are absent alone
		mustJSON(t, dir, &c, "channel", "update", "1", "--tags", "", "--url", "", "--metadata", "", "--json")
		if c.Tags != nil || c.URL != "" || c.Metadata != "" || c.Latitude != "-33.9" {
			t.Fatalf("after unsetting %+v", c)
		}
		mustJSON(t, dir, &c, "channel", "update", "1", "--latitude", "", "--longitude", "", "--elevation", "", "--json")
		var raw map[string]any
		mustJSON(t, dir, &raw, "channel", "show", "1", "--json")
		for _, k := range []string{"latitude", "longitude", "elevation", "metadata", "tags", "url"} {
			if _, ok := raw[k]; ok {
				t.Errorf("unset %s is in the JSON: %v", k, raw)
			}
		}
		if out := mustRun(t, dir, "channel", "show", "1"); strings.Contains(out, "Tags:") || strings.Contains(out, "Latitude:") {
			t.Fatalf("show prints unset settings:\n%s", out)
		}

		// Bad settings: an error naming the field, and nothing changes.
		var tooMany string
		for i := 0; i <= 30; i++ {
			tooMany += fmt.Sprintf("t%d,", i)
		}
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"--latitude", "91"}, "latitude must be a number from -90 to 90"},
			{[]string{"--longitude", "west"}, "longitude must be a number from -180 to 180"},
			{[]string{"--elevation", "1e3"}, "elevation must be a number"},
			{[]string{"--metadata", strings.Repeat("m", 4097)}, "metadata must be valid UTF-8 of at most 4096 bytes"},
			{[]string{"--tags", tooMany}, "tags: a channel has at most 30 tags"},
			{[]string{"--tags", strings.Repeat("t", 256)}, "each tag must be valid UTF-8 of at most 255 bytes"},
			{[]string{"--url", "javascript:alert(1)"}, "url must be an absolute http or https URL"},
			{[]string{"--url", "https://example.com/" + strings.Repeat("p", 2000)}, "url must be at most 2000 bytes"},
		} {
			for _, cmd := range [][]string{{"channel", "create", "--name", "x"}, {"channel", "update", "1"}} {
				args := append(append([]string{}, cmd...), tt.args...)
				if got := mustFail(t, dir, args...); !strings.Contains(got, tt.want) {
					t.Errorf("%s: got %q, want %q", strings.Join(args[:3], " "), got, tt.want)
				}
			}
		}
		var list []channelJSON
		mustJSON(t, dir, &list, "channel", "list", "--json")
		if len(list) != 1 || list[0].Latitude != "" || list[0].Tags != nil {
			t.Fatalf("refused commands changed something: %+v", list)
		}
	})
}
