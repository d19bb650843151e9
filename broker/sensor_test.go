package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/broker"
)

// TestSensorTopics covers Waziup-style access: publish {"value":...} to
// devices/<channel>/sensors/<field>/value by ID or name and field number or
// label; subscribers of those topics get {"value","timestamp"}.
func TestSensorTopics(t *testing.T) {
	ts := startServer(t, broker.Options{Anonymous: true})
	spec := auth.ChannelSpec{Name: "Greenhouse"}
	spec.Fields[0], spec.Fields[1] = "Temperature", "Humidity"
	c, err := ts.svc.CreateChannel(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	other := ts.channel(false)
	reader := ts.device(auth.Grant{ChannelID: c.ID, Subscribe: true})
	byID := rawDevice(t, ts.addr, reader, 4)
	if code, _ := byID.Subscribe(1, fmt.Sprintf("devices/%d/sensors/field1/value", c.ID)); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	byName := rawDevice(t, ts.addr, ts.device(auth.Grant{ChannelID: c.ID, Subscribe: true}), 4)
	if code, _ := byName.Subscribe(1, "devices/Greenhouse/sensors/Temperature/value"); code != 0 {
		t.Fatalf("SUBACK by name %#x", code)
	}
	wild := rawDevice(t, ts.addr, ts.device(auth.Grant{ChannelID: c.ID, Subscribe: true}), 4)
	if code, _ := wild.Subscribe(1, "devices/+/sensors/+/value"); code != 0 {
		t.Fatalf("SUBACK wildcard %#x", code)
	}
	if code, _ := wild.Subscribe(2, fmt.Sprintf("devices/%d/sensors/field1/value", other)); code != 0x80 {
		t.Fatalf("SUBACK for an unreadable channel %#x, want 0x80", code)
	}
	if code, _ := wild.Subscribe(3, "devices/Greenhouse/sensors/Pressure/value"); code != 0x80 {
		t.Fatalf("SUBACK for an unknown sensor %#x, want 0x80", code)
	}

	pub := rawDevice(t, ts.addr, ts.device(pubsub(c.ID), pubsub(other)), 4)
	publish := func(id uint16, topic, payload string) byte {
		t.Helper()
		if err := pub.Publish(topic, 1, id, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := pub.ReadPuback(); err != nil {
			return 1
		}
		return 0
	}
	publish(1, "devices/Greenhouse/sensors/Temperature/value", `{"value": 23.50, "timestamp": "2016-06-08T18:20:27Z"}`)
	publish(2, fmt.Sprintf("devices/%d/sensors/field1/value", other), `{"value": "x"}`)
	want := `{"value":"23.50","timestamp":"2016-06-08T18:20:27Z"}`
	if topic, payload := readPublish(t, byID); topic != fmt.Sprintf("devices/%d/sensors/field1/value", c.ID) || payload != want {
		t.Fatalf("by ID got %s %s", topic, payload)
	}
	if topic, payload := readPublish(t, byName); topic != "devices/Greenhouse/sensors/Temperature/value" || payload != want {
		t.Fatalf("by name got %s %s", topic, payload)
	}
	if topic, payload := readPublish(t, wild); topic != fmt.Sprintf("devices/%d/sensors/field1/value", c.ID) || payload != want {
		t.Fatalf("wildcard got %s %s", topic, payload)
	}
	readNothing(t, byID)
	readNothing(t, byName)
	readNothing(t, wild) // one copy, and nothing from the other channel
	es := ts.entries(c.ID)
	if len(es) != 1 || !strings.Contains(es[0], `"created_at":"2016-06-08T18:20:27Z","entry_id":1,"field1":"23.50","field2":null`) {
		t.Fatalf("stored %v", es)
	}

	// Rejections: a device without rights, a bad payload, anonymous.
	stranger := rawDevice(t, ts.addr, ts.device(), 4)
	if err := stranger.Publish(fmt.Sprintf("devices/%d/sensors/field2/value", c.ID), 0, 0, []byte(`{"value":1}`)); err != nil {
		t.Fatal(err)
	}
	anon := rawAnonymous(t, ts.addr, "anon")
	if err := anon.Publish("devices/Greenhouse/sensors/Humidity/value", 0, 0, []byte(`{"value":1}`)); err != nil {
		t.Fatal(err)
	}
	if publish(3, "devices/Greenhouse/sensors/Humidity/value", `{"value":null}`) == 0 {
		t.Fatal("a null value was acknowledged")
	}
	if es := ts.entries(c.ID); len(es) != 1 {
		t.Fatalf("rejected sensor publishes were stored: %v", es)
	}
}

// TestSensorTopicsWithMosquittoURL follows the Waziup docs: mosquitto_pub
// and mosquitto_sub with -L mqtt://user:password@host:port/topic.
func TestSensorTopicsWithMosquittoURL(t *testing.T) {
	pubTool, subTool := requireTool(t, "mosquitto_pub"), requireTool(t, "mosquitto_sub")
	ts := startServer(t, broker.Options{})
	ch := ts.channel(false)
	reader := ts.device(auth.Grant{ChannelID: ch, Subscribe: true})
	writer := ts.device(auth.Grant{ChannelID: ch, Publish: true})
	topic := fmt.Sprintf("devices/%d/sensors/field3/value", ch)
	mqttURL := func(cr *auth.Credentials) string {
		// Passwords are URL-safe base64, so they go into the URL as they are.
		return "mqtt://" + cr.Device.Username + ":" + cr.Password + "@" + ts.addr + "/" + topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, subTool, "-L", mqttURL(reader), "-i", reader.Device.ClientID, "-C", "1")
	var out bytes.Buffer
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, ts, 1)
	run(t, pubTool, "-L", mqttURL(writer), "-i", writer.Device.ClientID, "-q", "1", "-m", `{"value": "55.6", "timestamp": "2016-06-08T18:20:27Z"}`)
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != `{"value":"55.6","timestamp":"2016-06-08T18:20:27Z"}` {
		t.Fatalf("mosquitto_sub printed %q", got)
	}
}
