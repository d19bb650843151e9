package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func TestChannelBind(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "Living room", "--field", "1=Temperature", "--field", "2=Humidity")
		mustRun(t, dir, "channel", "create", "--name", "Plug")

		var b map[string]any
		mustJSON(t, dir, &b, "channel", "bind", "1", "--topic", "zigbee2mqtt/living_room",
			"--field", "1=$.temperature", "--field", "2=$.humidity", "--status", "$.battery", "--created-at", "$.time", "--json")
		if k := keys(b); !reflect.DeepEqual(k, []string{"channel_id", "created_at", "created_at_path", "fields", "id", "status", "topic"}) {
			t.Fatalf("keys %v", k)
		}
		if b["id"] != 1.0 || b["channel_id"] != 1.0 || b["topic"] != "zigbee2mqtt/living_room" || b["status"] != "$.battery" || b["created_at_path"] != "$.time" ||
			!reflect.DeepEqual(b["fields"], map[string]any{"field1": "$.temperature", "field2": "$.humidity"}) {
			t.Fatalf("binding %v", b)
		}
		out := mustRun(t, dir, "channel", "bind", "2", "--topic", "tele/+/SENSOR", "--field", "field3=$['ENERGY'].Power")
		if out != "Binding 2: publishes on tele/+/SENSOR feed channel 2 (field3=$['ENERGY'].Power).\n" {
			t.Fatalf("bind printed %q", out)
		}

		var all []bindingJSON
		mustJSON(t, dir, &all, "channel", "bindings", "--json")
		if len(all) != 2 || all[0].ID != 1 || all[1].Topic != "tele/+/SENSOR" || all[1].Fields["field3"] != "$['ENERGY'].Power" {
			t.Fatalf("bindings %+v", all)
		}
		var one []bindingJSON
		mustJSON(t, dir, &one, "channel", "bindings", "2", "--json")
		if len(one) != 1 || one[0].ID != 2 {
			t.Fatalf("bindings of channel 2: %+v", one)
		}
		table := mustRun(t, dir, "channel", "bindings")
		for _, want := range []string{"ID  CHANNEL  TOPIC", "zigbee2mqtt/living_room", "field1=$.temperature field2=$.humidity status=$.battery created_at=$.time"} {
			if !strings.Contains(table, want) {
				t.Fatalf("table lacks %q:\n%s", want, table)
			}
		}

		if out := mustRun(t, dir, "channel", "unbind", "2"); out != "Binding 2 deleted.\n" {
			t.Fatalf("unbind printed %q", out)
		}
		if got := mustFail(t, dir, "channel", "unbind", "2"); !strings.Contains(got, "binding 2 not found") || !strings.Contains(got, "feedmq channel bindings") {
			t.Fatalf("second unbind: %q", got)
		}
		// Deleting the channel deletes its bindings.
		mustRun(t, dir, "channel", "delete", "1")
		var none []bindingJSON
		if mustJSON(t, dir, &none, "channel", "bindings", "--json"); none == nil || len(none) != 0 {
			t.Fatalf("after deleting the channel: %+v", none)
		}
	})
}

func TestChannelBindErrors(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "c", "--field", "1=T")
		mustRun(t, dir, "channel", "bind", "1", "--topic", "a/b", "--field", "1=$")
		for _, tt := range []struct{ args, want string }{
			{"channel bind 1 --field 1=$", "--topic is required"},
			{"channel bind 1 --topic x", "give at least one --field N=PATH or --status PATH"},
			{"channel bind 1 --topic x --field 9=$", "field number must be 1 to 8"},
			{"channel bind 1 --topic x --field 1", "must look like 1=$.temperature"},
			{"channel bind 1 --topic x --field 1=temperature", "must start with $"},
			{"channel bind 1 --topic x --field 1=$.a --field 1=$.b", "field1 is bound twice"},
			{"channel bind 1 --topic x --field 2=$.a", "field2 is not enabled on channel 1"},
			{"channel bind 1 --topic channels/1/publish --field 1=$", "governs itself"},
			{"channel bind 1 --topic a/#/b --field 1=$", "before its last level"},
			{"channel bind 1 --topic a/b --field 1=$", "already has binding 1"},
			{"channel bind 1 --topic x --field 1=$..a", "recursive descent"},
			{"channel bind 1 --topic x --status $.*", "wildcard"},
			{"channel bind 1 --topic x --field 1=$ --created-at time", "created_at: path"},
			{"channel bind 2 --topic x --field 1=$", "channel 2 not found"},
			{"channel bind x --topic x --field 1=$", "invalid channel ID"},
			{"channel bind", "takes one channel ID"},
			{"channel unbind 0", "invalid binding ID"},
			{"channel unbind", "takes one binding ID"},
			{"channel bindings 7", "channel 7 not found"},
			{"channel bindings 1 2", "accepts at most 1 arg"},
		} {
			if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
			}
		}
		long := strings.Repeat("a/", 600)
		if got := mustFail(t, dir, "channel", "bind", "1", "--topic", long, "--field", "1=$"); !strings.Contains(got, "limit is 1024") {
			t.Errorf("long topic: %q", got)
		}
	})
}

// The limits of the configuration apply.
func TestChannelBindLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/feedmq.yaml"
	writeFile(t, cfg, "limits:\n  max_bindings_per_channel: 1\n")
	mustRun(t, dir, "--config", cfg, "channel", "create", "--name", "c")
	mustRun(t, dir, "--config", cfg, "channel", "bind", "1", "--topic", "a", "--field", "1=$")
	if got := mustFail(t, dir, "--config", cfg, "channel", "bind", "1", "--topic", "b", "--field", "1=$"); !strings.Contains(got, "limits.max_bindings_per_channel") {
		t.Fatalf("over the limit: %q", got)
	}
}

// serve hands the broker every binding at start and after each change,
// and /metrics reports them.
func TestServeBindingsMetrics(t *testing.T) {
	s, ch, base := openGardenServer(t)
	if v, ok := metricValue(scrape(t, base), "feedmq_bindings"); !ok || v != 0 {
		t.Fatalf("feedmq_bindings = %v, %v before any binding", v, ok)
	}
	if _, err := s.svc.Bind(t.Context(), channels.Binding{ChannelID: ch.ID, Topic: "zigbee2mqtt/garden", Fields: [8]string{"$.temperature"}}); err != nil {
		t.Fatal(err)
	}
	mfs := scrape(t, base)
	if v, _ := metricValue(mfs, "feedmq_bindings"); v != 1 {
		t.Fatalf("feedmq_bindings = %v after a bind", v)
	}
	for _, r := range []string{"no_values", "bad_payload", "too_large", "unknown_channel", "rate_limited", "store_error", "shutting_down"} {
		if v, ok := metricValue(mfs, "feedmq_binding_failures_total", "reason", r); !ok || v != 0 {
			t.Errorf("feedmq_binding_failures_total{reason=%q} = %v, %v", r, v, ok)
		}
	}
	if _, ok := metricValue(mfs, "feedmq_binding_entries_total"); !ok {
		t.Error("no feedmq_binding_entries_total")
	}
	if err := s.svc.DeleteChannel(t.Context(), ch.ID); err != nil {
		t.Fatal(err)
	}
	if v, _ := metricValue(scrape(t, base), "feedmq_bindings"); v != 0 {
		t.Fatalf("feedmq_bindings = %v after deleting the channel", v)
	}
}
