package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDeviceAllowDisallow(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "device", "create", "--name", "ha")
		var got ruleListJSON
		mustJSON(t, dir, &got, "device", "allow", "1", "--topic", "homeassistant/#", "--topic", "zigbee2mqtt/#", "--read", "--write", "--json")
		if want := (ruleListJSON{List: "device", Device: 1, Rules: []string{"readwrite homeassistant/#", "readwrite zigbee2mqtt/#"}}); !reflect.DeepEqual(got, want) {
			t.Fatalf("allow: %+v, want %+v", got, want)
		}
		// The same pattern again replaces its access.
		out := mustRun(t, dir, "device", "allow", "1", "--topic", "zigbee2mqtt/#", "--read")
		if !strings.Contains(out, "Access rules of device 1:") || !strings.Contains(out, "read       zigbee2mqtt/#") {
			t.Fatalf("allow output:\n%s", out)
		}
		mustRun(t, dir, "device", "allow", "1", "--topic", "zigbee2mqtt/bridge/#", "--deny")
		mustRun(t, dir, "device", "allow", "anonymous", "--topic", "public/#", "--read")
		mustRun(t, dir, "device", "allow", "everyone", "--topic", "tele/%c/#", "--write")

		var dev map[string]any
		mustJSON(t, dir, &dev, "device", "show", "1", "--json")
		if want := []any{"readwrite homeassistant/#", "read zigbee2mqtt/#", "deny zigbee2mqtt/bridge/#"}; !reflect.DeepEqual(dev["rules"], want) {
			t.Fatalf("device show --json rules: %v", dev["rules"])
		}
		var list []map[string]any
		mustJSON(t, dir, &list, "device", "list", "--json")
		if len(list) != 1 || !reflect.DeepEqual(list[0]["rules"], dev["rules"]) {
			t.Fatalf("device list --json: %v", list)
		}
		if out := mustRun(t, dir, "device", "show", "1"); !strings.Contains(out, "Rules:         readwrite homeassistant/#\n               read zigbee2mqtt/#\n") {
			t.Fatalf("device show:\n%s", out)
		}

		var all map[string]any
		mustJSON(t, dir, &all, "access", "list", "--json")
		if !reflect.DeepEqual(all["anonymous"], []any{"read public/#"}) || !reflect.DeepEqual(all["everyone"], []any{"write tele/%c/#"}) {
			t.Fatalf("access list --json: %v", all)
		}
		if devs, _ := all["devices"].([]any); len(devs) != 1 {
			t.Fatalf("access list --json devices: %v", all["devices"])
		}
		out = mustRun(t, dir, "access", "list")
		for _, want := range []string{"anonymous      read       public/#", "everyone       write      tele/%c/#", "device 1 (ha)  deny       zigbee2mqtt/bridge/#"} {
			if !strings.Contains(out, want) {
				t.Errorf("access list lacks %q:\n%s", want, out)
			}
		}

		mustJSON(t, dir, &got, "device", "disallow", "1", "--topic", "zigbee2mqtt/#", "--topic", "zigbee2mqtt/bridge/#", "--json")
		if !reflect.DeepEqual(got.Rules, []string{"readwrite homeassistant/#"}) {
			t.Fatalf("disallow: %+v", got)
		}
		if out := mustRun(t, dir, "device", "disallow", "anonymous", "--topic", "public/#"); out != "Access rules of anonymous connections: none.\n" {
			t.Fatalf("disallow anonymous: %q", out)
		}

		for _, tt := range []struct{ args, want string }{
			{"device allow 1 --topic a", "give --read, --write (both for readwrite) or --deny"},
			{"device allow 1 --read", "give at least one --topic"},
			{"device allow 1 --topic a --deny --write", "--deny cannot go with --read or --write"},
			{"device allow 1 --topic channels/1/publish --write", `invalid --topic: topic pattern "channels/1/publish": channels/, devices/ and $ topics`},
			{"device allow 1 --topic $SYS/# --read", "invalid --topic"},
			{"device allow 1 --topic a/#/b --read", "# must be the last level"},
			{"device allow 1 --topic " + strings.Repeat("x", 1025) + " --read", "longer than 1024 bytes"},
			{"device allow 9 --topic a --read", "device 9 not found; see `feedmq device list`"},
			{"device allow all --topic a --read", `invalid device ID "all": give a device ID (see ` + "`feedmq device list`), anonymous or everyone"},
			{"device allow --topic a --read", "takes one device ID, anonymous or everyone"},
			{"device disallow 1", "give the --topic to remove"},
			{"device disallow 1 --topic nope", `no access rule with topic pattern "nope"; see ` + "`feedmq access list`"},
			{"device disallow everyone --topic nope", `everyone: no access rule`},
		} {
			if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
			}
		}
	})
}

func TestDeviceAllowTooManyRules(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "device", "create", "--name", "d")
		args := []string{"device", "allow", "1", "--read"}
		for i := range 100 {
			args = append(args, "--topic", "t/"+strings.Repeat("x", i+1))
		}
		mustRun(t, dir, args...)
		if got := mustFail(t, dir, "device", "allow", "1", "--read", "--topic", "one/more"); !strings.Contains(got, "at most 100 rules") {
			t.Fatalf("rule 101: %s", got)
		}
	})
}

func TestAccessImport(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "device", "create", "--name", "homeassistant")
		mustRun(t, dir, "device", "create", "--name", "zigbee2mqtt")
		file := filepath.Join(t.TempDir(), "acl")
		write := func(s string) {
			if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		acl := "# Mosquitto\ntopic read public/#\n\npattern readwrite tele/%c/#\n" +
			"user homeassistant\ntopic readwrite homeassistant/#\ntopic read zigbee2mqtt/#\n" +
			"user zigbee2mqtt\ntopic zigbee2mqtt/#\n"

		write(acl + "user ghost\ntopic x\nuser spook\ntopic y\n")
		if got := mustFail(t, dir, "access", "import", file); !strings.Contains(got, `"ghost", "spook"`) || !strings.Contains(got, "nothing was imported") {
			t.Fatalf("unknown users: %s", got)
		}
		write(acl + "user zigbee2mqtt\ntopic read $SYS/#\n")
		if got := mustFail(t, dir, "access", "import", file); !strings.Contains(got, "ACL file line 11: topic pattern \"$SYS/#\"") {
			t.Fatalf("reserved topic: %s", got)
		}

		write(acl)
		out := mustRun(t, dir, "access", "import", file, "--dry-run")
		for _, want := range []string{"Dry run, nothing changed.", `device 1 (homeassistant, user "homeassistant")  2 from the file, 2 in all`, "everyone"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run lacks %q:\n%s", want, out)
			}
		}
		if out := mustRun(t, dir, "access", "list"); !strings.Contains(out, "No access rules") {
			t.Fatalf("a dry run imported:\n%s", out)
		}
		var res struct {
			DryRun bool             `json:"dry_run"`
			Lists  []importListJSON `json:"lists"`
		}
		mustJSON(t, dir, &res, "access", "import", file, "--json")
		if res.DryRun || len(res.Lists) != 4 || res.Lists[3].User != "zigbee2mqtt" || !reflect.DeepEqual(res.Lists[3].Rules, []string{"readwrite zigbee2mqtt/#"}) {
			t.Fatalf("import --json: %+v", res)
		}
		var all map[string]any
		mustJSON(t, dir, &all, "access", "list", "--json")
		if !reflect.DeepEqual(all["anonymous"], []any{"read public/#"}) || !reflect.DeepEqual(all["everyone"], []any{"readwrite tele/%c/#"}) {
			t.Fatalf("after import: %v", all)
		}
		// --replace: each list the file names holds exactly its rules.
		mustRun(t, dir, "device", "allow", "2", "--topic", "extra", "--read")
		write("user zigbee2mqtt\ntopic write z/#\n")
		mustRun(t, dir, "access", "import", file, "--replace")
		var dev map[string]any
		mustJSON(t, dir, &dev, "device", "show", "2", "--json")
		if !reflect.DeepEqual(dev["rules"], []any{"write z/#"}) {
			t.Fatalf("after --replace: %v", dev["rules"])
		}
		if got := mustFail(t, dir, "access", "import", filepath.Join(t.TempDir(), "missing")); !strings.Contains(got, "no such file") {
			t.Fatalf("missing file: %s", got)
		}
		if got := mustFail(t, dir, "access", "import"); !strings.Contains(got, "takes one file") {
			t.Fatalf("no file: %s", got)
		}
	})
}
