package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

// accessList is `feedmq access list --json`.
type accessList struct {
	Anonymous []string `json:"anonymous"`
	Everyone  []string `json:"everyone"`
	Devices   []struct {
		ID    uint64   `json:"id"`
		Name  string   `json:"name"`
		Rules []string `json:"rules"`
	} `json:"devices"`
}

// Access rules changed through a running server's socket (allow, import)
// are stored: a restarted server and an offline command read them back.
func TestAccessRulesAcrossRestarts(t *testing.T) {
	data := t.TempDir()
	cli(t, data, nil, "device", "create", "--name", "homeassistant", "--json")
	cli(t, data, nil, "device", "create", "--name", "zigbee2mqtt", "--json")
	srv := startServe(t, data)

	cli(t, data, nil, "device", "allow", "1", "--topic", "homeassistant/#", "--read", "--write", "--json")
	cli(t, data, nil, "device", "allow", "everyone", "--topic", "tele/%c/#", "--write", "--json")
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic read public/#\nuser zigbee2mqtt\ntopic readwrite zigbee2mqtt/#\ntopic deny zigbee2mqtt/bridge/config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dry struct {
		DryRun bool `json:"dry_run"`
	}
	cli(t, data, &dry, "access", "import", acl, "--dry-run", "--json")
	if !dry.DryRun {
		t.Fatal("not a dry run")
	}
	var before accessList
	cli(t, data, &before, "access", "list", "--json")
	if len(before.Anonymous) != 0 || len(before.Devices) != 1 {
		t.Fatalf("the dry run changed rules: %+v", before)
	}
	cli(t, data, nil, "access", "import", acl, "--json")
	cli(t, data, &before, "access", "list", "--json")
	want := accessList{Anonymous: []string{"read public/#"}, Everyone: []string{"write tele/%c/#"}}
	if !reflect.DeepEqual(before.Anonymous, want.Anonymous) || !reflect.DeepEqual(before.Everyone, want.Everyone) || len(before.Devices) != 2 ||
		!reflect.DeepEqual(before.Devices[1].Rules, []string{"readwrite zigbee2mqtt/#", "deny zigbee2mqtt/bridge/config"}) {
		t.Fatalf("through the socket: %+v", before)
	}

	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.logs.String())
	}
	var offline accessList
	cli(t, data, &offline, "access", "list", "--json")
	if !reflect.DeepEqual(offline, before) {
		t.Fatalf("offline after stop:\n%+v\nwant\n%+v", offline, before)
	}
	cli(t, data, nil, "device", "disallow", "everyone", "--topic", "tele/%c/#", "--json")
	startServe(t, data)
	var again accessList
	cli(t, data, &again, "access", "list", "--json")
	before.Everyone = []string{}
	if !reflect.DeepEqual(again, before) {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", again, before)
	}
}
