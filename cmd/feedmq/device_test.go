package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
)

var (
	clientIDRE = regexp.MustCompile(`^[A-Za-z0-9]{23}$`)
	passwordRE = regexp.MustCompile(`^[A-Za-z0-9_-]{24}$`)
)

func TestDeviceCreate(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "A")
		mustRun(t, dir, "channel", "create", "--name", "B")
		mustRun(t, dir, "channel", "create", "--name", "C")

		t.Run("JSONShape", func(t *testing.T) {
			var got map[string]any
			mustJSON(t, dir, &got, "device", "create", "--name", "esp32", "--channel", "1", "--channel", "2:pub", "--channel", "3:sub", "--json")
			want := []string{"channels", "client_id", "created_at", "id", "name", "password", "rules", "username"}
			if k := keys(got); !reflect.DeepEqual(k, want) {
				t.Fatalf("keys %v, want %v", k, want)
			}
			grants := []any{
				map[string]any{"id": 1.0, "publish": true, "subscribe": true},
				map[string]any{"id": 2.0, "publish": true, "subscribe": false},
				map[string]any{"id": 3.0, "publish": false, "subscribe": true},
			}
			if !reflect.DeepEqual(got["channels"], grants) {
				t.Fatalf("channels %v", got["channels"])
			}
			user, _ := got["username"].(string)
			if !clientIDRE.MatchString(user) || got["client_id"] != user {
				t.Fatalf("username %v client_id %v", got["username"], got["client_id"])
			}
			if p, _ := got["password"].(string); !passwordRE.MatchString(p) {
				t.Fatalf("password %q", p)
			}
		})
		t.Run("NoChannels", func(t *testing.T) {
			var got map[string]any
			mustJSON(t, dir, &got, "device", "create", "--name", "bare", "--json")
			if ch, ok := got["channels"].([]any); !ok || len(ch) != 0 {
				t.Fatalf("channels %#v, want []", got["channels"])
			}
		})
		t.Run("Errors", func(t *testing.T) {
			for _, tt := range []struct{ args, want string }{
				{"device create --channel 1", "--name is required"},
				{"device create --name x --channel 1:rw", "the suffix must be :pub, :sub or :pubsub"},
				{"device create --name x --channel one", "want ID, ID:pub, ID:sub or ID:pubsub"},
				{"device create --name x --channel 1 --channel 1:pub", "--channel 1 is given twice"},
				{"device create --name x --channel 9", "channel 9 not found; see `feedmq channel list`"},
				{"device create --name x --format yaml", `invalid --format "yaml"`},
				{"device create --name x --json --format env", "--json and --format env would both go to stdout"},
			} {
				if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
					t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
				}
			}
		})
	})
}

func TestDeviceCredentialFormats(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		for format, re := range map[string]string{
			"text": `^username = ([A-Za-z0-9]{23})\nclientId = ([A-Za-z0-9]{23})\npassword = ([A-Za-z0-9_-]{24})\n$`,
			"env":  `^MQTT_USERNAME=([A-Za-z0-9]{23})\nMQTT_CLIENT_ID=([A-Za-z0-9]{23})\nMQTT_PASSWORD=([A-Za-z0-9_-]{24})\n$`,
			"arduino": `^#define SECRET_MQTT_USERNAME "([A-Za-z0-9]{23})"\n#define SECRET_MQTT_CLIENT_ID "([A-Za-z0-9]{23})"\n` +
				`#define SECRET_MQTT_PASSWORD "([A-Za-z0-9_-]{24})"\n$`,
		} {
			t.Run(format, func(t *testing.T) {
				out, stderr, err := runCommand(t, "--data", dir, "device", "create", "--name", format, "--format", format)
				if err != nil {
					t.Fatal(err)
				}
				m := regexp.MustCompile(re).FindStringSubmatch(out)
				if m == nil || m[1] != m[2] {
					t.Fatalf("output does not match %s:\n%s", re, out)
				}
				if !strings.Contains(stderr, "shown only once") {
					t.Fatalf("stderr %q", stderr)
				}
			})
		}
		t.Run("json", func(t *testing.T) {
			var got auth.DeviceJSON
			mustJSON(t, dir, &got, "device", "create", "--name", "j", "--format", "json")
			if got.Password == "" || got.Username == "" {
				t.Fatalf("got %+v", got)
			}
		})
	})
}

func TestDeviceCredentialsOutputFile(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		path := filepath.Join(t.TempDir(), "mqtt_secrets.h")
		out := mustRun(t, dir, "device", "create", "--name", "d", "--format", "arduino", "--output", path)
		if !strings.Contains(out, "credentials written to "+path) || strings.Contains(out, "PASSWORD") {
			t.Fatalf("stdout %q", out)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		if !strings.HasPrefix(string(b), "#define SECRET_MQTT_USERNAME ") {
			t.Fatalf("file %q", b)
		}

		// An existing file is never overwritten, and the refused command
		// changes nothing: no password is lost.
		got := mustFail(t, dir, "device", "reset-password", "1", "--output", path)
		if !strings.Contains(got, path+" already exists") {
			t.Fatalf("got %q", got)
		}
		if b2, _ := os.ReadFile(path); string(b2) != string(b) {
			t.Fatal("file overwritten")
		}
		got = mustFail(t, dir, "device", "create", "--name", "e", "--output", path)
		if !strings.Contains(got, "already exists") {
			t.Fatalf("got %q", got)
		}
		var list []auth.DeviceJSON
		if mustJSON(t, dir, &list, "device", "list", "--json"); len(list) != 1 {
			t.Fatalf("refused create still created a device: %+v", list)
		}

		// A failed change removes the file it prepared.
		other := filepath.Join(t.TempDir(), "creds.env")
		mustFail(t, dir, "device", "reset-password", "7", "--output", other)
		if _, err := os.Stat(other); !os.IsNotExist(err) {
			t.Fatalf("file left behind: %v", err)
		}

		// --json with --output: the file gets --format, stdout the JSON.
		var d auth.DeviceJSON
		mustJSON(t, dir, &d, "device", "reset-password", "1", "--format", "env", "--output", other, "--json")
		b, _ = os.ReadFile(other)
		if d.Password == "" || !strings.Contains(string(b), "MQTT_PASSWORD="+d.Password+"\n") {
			t.Fatalf("json %+v, file %q", d, b)
		}
	})
}

func TestDeviceListShowDelete(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "A")
		var created auth.DeviceJSON
		mustJSON(t, dir, &created, "device", "create", "--name", "d1", "--channel", "1:sub", "--json")
		mustRun(t, dir, "device", "create", "--name", "d2")

		var list []map[string]any
		mustJSON(t, dir, &list, "device", "list", "--json")
		if len(list) != 2 {
			t.Fatalf("got %v", list)
		}
		want := []string{"channels", "client_id", "connections", "created_at", "id", "last_publish_at", "name", "rules", "username"}
		if k := keys(list[0]); !reflect.DeepEqual(k, want) {
			t.Fatalf("keys %v, want %v (no password outside create and reset)", k, want)
		}
		// Nothing is connected in these tests (and offline nothing can be).
		if c, ok := list[0]["connections"].([]any); !ok || len(c) != 0 || list[0]["last_publish_at"] != nil {
			t.Fatalf("activity of an idle device: %v", list[0])
		}
		out := mustRun(t, dir, "device", "list")
		if !strings.Contains(out, "1:sub") || !strings.Contains(out, created.Username) || strings.Count(out, "\n") != 3 {
			t.Fatalf("table:\n%s", out)
		}
		header := regexp.MustCompile(`^ID +NAME +USERNAME +CHANNELS +CREATED +CONNECTED +SINCE +ADDRESS +LISTENER +LAST PUBLISH\n`)
		idle := regexp.MustCompile(`\n1 +d1 +\S+ +1:sub +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +no +- +- +- +-\n`)
		if !header.MatchString(out) || !idle.MatchString(out) {
			t.Fatalf("table columns:\n%s", out)
		}
		var shown map[string]any
		mustJSON(t, dir, &shown, "device", "show", "1", "--json")
		if k := keys(shown); !reflect.DeepEqual(k, want) || shown["username"] != created.Username {
			t.Fatalf("got %v", shown)
		}
		if out := mustRun(t, dir, "device", "show", "1"); strings.Contains(out, created.Password) ||
			!strings.Contains(out, "Connected:     no\nLast publish:  -\n") {
			t.Fatalf("show printed the password or no activity:\n%s", out)
		}

		if out := mustRun(t, dir, "device", "delete", "2"); out != "Device 2 deleted.\n" {
			t.Fatalf("got %q", out)
		}
		want2 := "device 2 not found; see `feedmq device list`"
		for _, args := range []string{"device show 2", "device delete 2", "device reset-password 2"} {
			if got := mustFail(t, dir, strings.Fields(args)...); got != want2 {
				t.Errorf("%s: got %q, want %q", args, got, want2)
			}
		}
	})
}

func TestDeviceAuthorize(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "A")
		mustRun(t, dir, "channel", "create", "--name", "B")
		mustRun(t, dir, "device", "create", "--name", "d", "--channel", "1:pub")

		var d auth.DeviceJSON
		mustJSON(t, dir, &d, "device", "authorize", "1", "--channel", "1:sub", "--channel", "2", "--json")
		want := []auth.Grant{{ChannelID: 1, Subscribe: true}, {ChannelID: 2, Publish: true, Subscribe: true}}
		if !reflect.DeepEqual(d.Channels, want) {
			t.Fatalf("got %+v, want %+v", d.Channels, want)
		}
		mustJSON(t, dir, &d, "device", "deauthorize", "1", "--channel", "1", "--json")
		if !reflect.DeepEqual(d.Channels, want[1:]) {
			t.Fatalf("got %+v", d.Channels)
		}
		for _, tt := range []struct{ args, want string }{
			{"device authorize 1", "give at least one --channel"},
			{"device authorize 1 --channel 5", "channel 5 not found; see `feedmq channel list`"},
			{"device authorize 5 --channel 1", "device 5 not found; see `feedmq device list`"},
			{"device deauthorize 1", "give the --channel to remove"},
			{"device deauthorize 1 --channel 2:pub", "give just its ID"},
			{"device deauthorize 1 --channel 1", "device 1 is not authorized for channel 1; see `feedmq device show 1`"},
		} {
			if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
			}
		}
	})
}

func TestDeviceLimits(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "feedmq.yaml")
	writeFile(t, cfgPath, "limits:\n  max_devices: 1\n  max_channels_per_device: 1\n")
	dir := t.TempDir()
	run := func(args ...string) error {
		_, _, err := runCommand(t, append([]string{"--data", dir, "--config", cfgPath}, args...)...)
		return err
	}
	if err := run("channel", "create", "--name", "A"); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "channel", "create", "--name", "B")
	if err := run("device", "create", "--name", "a", "--channel", "1", "--channel", "2"); err == nil || !strings.Contains(err.Error(), "max_channels_per_device") {
		t.Fatalf("got %v", err)
	}
	// A missing channel is named before the limit, as it always was.
	want := "channel 99 not found; see `feedmq channel list`"
	if err := run("device", "create", "--name", "a", "--channel", "1", "--channel", "99"); err == nil || err.Error() != want {
		t.Fatalf("create with a missing channel over the limit: got %v, want %q", err, want)
	}
	if err := run("device", "create", "--name", "a", "--channel", "1"); err != nil {
		t.Fatal(err)
	}
	if err := run("device", "authorize", "1", "--channel", "99"); err == nil || err.Error() != want {
		t.Fatalf("authorize a missing channel over the limit: got %v, want %q", err, want)
	}
	if err := run("device", "create", "--name", "b"); err == nil || !strings.Contains(err.Error(), "device limit reached (1 devices)") {
		t.Fatalf("got %v", err)
	}
}

func TestDeviceResetPassword(t *testing.T) {
	s := startAdminServer(t)
	var created, reset auth.DeviceJSON
	mustJSON(t, s.dir, &created, "device", "create", "--name", "d", "--json")
	mustJSON(t, s.dir, &reset, "device", "reset-password", "1", "--json")
	if reset.Password == created.Password || reset.Username != created.Username {
		t.Fatalf("created %+v reset %+v", created, reset)
	}
	// The running server's registry changed at once.
	if _, err := s.svc.Registry.Authenticate(created.ClientID, created.Username, created.Password); err == nil {
		t.Fatal("old password still accepted")
	}
	if id, err := s.svc.Registry.Authenticate(reset.ClientID, reset.Username, reset.Password); err != nil || id != 1 {
		t.Fatalf("new password: %d, %v", id, err)
	}
}

func TestDeviceDescriptionUpdate(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "A")
		var created map[string]any
		mustJSON(t, dir, &created, "device", "create", "--name", "esp32", "--description", "garden\nshed", "--channel", "1:pub", "--json")
		want := []string{"channels", "client_id", "created_at", "description", "id", "name", "password", "rules", "username"}
		if k := keys(created); !reflect.DeepEqual(k, want) || created["description"] != "garden\nshed" {
			t.Fatalf("created %v, keys %v", created, keys(created))
		}
		out := mustRun(t, dir, "device", "show", "1")
		if !strings.Contains(out, "Description:") || !strings.Contains(out, `"garden\nshed"`) {
			t.Fatalf("show:\n%s", out)
		}

		// Only the flags given change; credentials and rights stay.
		var d auth.DeviceJSON
		mustJSON(t, dir, &d, "device", "update", "1", "--name", "esp32-shed", "--json")
		if d.Name != "esp32-shed" || d.Description != "garden\nshed" || d.Username != created["username"] || d.Password != "" ||
			!reflect.DeepEqual(d.Channels, []auth.Grant{{ChannelID: 1, Publish: true}}) {
			t.Fatalf("after rename %+v", d)
		}
		out = mustRun(t, dir, "device", "update", "1", "--description", "")
		if !strings.Contains(out, "esp32-shed") || strings.Contains(out, "Description:") || strings.Contains(out, "password") {
			t.Fatalf("update table:\n%s", out)
		}
		var shown map[string]any
		mustJSON(t, dir, &shown, "device", "show", "1", "--json")
		if _, ok := shown["description"]; ok || shown["name"] != "esp32-shed" {
			t.Fatalf("after clearing the description %v", shown)
		}

		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"device", "update", "1"}, "nothing to update; give --name or --description"},
			{[]string{"device", "update", "9", "--name", "x"}, "device 9 not found; see `feedmq device list`"},
			{[]string{"device", "update", "1", "--name", " "}, "device name is required"},
			{[]string{"device", "update", "1", "--name", strings.Repeat("n", 256)}, "device name is required (valid UTF-8, at most 255 bytes, no control characters)"},
			{[]string{"device", "update", "1", "--description", strings.Repeat("d", 2001)}, "device description must be valid UTF-8 of at most 2000 bytes"},
			{[]string{"device", "create", "--name", "x", "--description", strings.Repeat("d", 2001)}, "device description must be valid UTF-8 of at most 2000 bytes"},
		} {
			if got := mustFail(t, dir, tt.args...); !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %q, want %q", strings.Join(tt.args[:3], " "), got, tt.want)
			}
		}
		var list []auth.DeviceJSON
		mustJSON(t, dir, &list, "device", "list", "--json")
		if len(list) != 1 || list[0].Name != "esp32-shed" || list[0].Description != "" {
			t.Fatalf("refused commands changed something: %+v", list)
		}
	})
}
