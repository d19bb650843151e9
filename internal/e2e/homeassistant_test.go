package e2e

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// pahoClient is a Paho Go client whose TCP connection the test can cut, as
// a device losing power would, and whose messages it reads in order.
type pahoClient struct {
	t    *testing.T
	name string
	c    paho.Client
	msgs chan paho.Message

	mu sync.Mutex
	nc net.Conn
}

// pahoConnect connects device d to addr with opts (client ID, username
// and password are set here) and fails the test unless the broker accepts.
func pahoConnect(t *testing.T, addr, name string, d ruledDevice, opts *paho.ClientOptions) *pahoClient {
	t.Helper()
	p := &pahoClient{t: t, name: name, msgs: make(chan paho.Message, 256)}
	opts.AddBroker("tcp://" + addr).SetClientID(d.ClientID).SetUsername(d.Username).SetPassword(d.Password).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wireTimeout).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { p.msgs <- m }).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			nc, err := net.DialTimeout("tcp", u.Host, wireTimeout)
			p.mu.Lock()
			p.nc = nc
			p.mu.Unlock()
			return nc, err
		})
	p.c = paho.NewClient(opts)
	tok := p.c.Connect()
	if !tok.WaitTimeout(wireTimeout) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", name, tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(0) })
	return p
}

func (p *pahoClient) wait(tok paho.Token, what string) {
	p.t.Helper()
	if !tok.WaitTimeout(wireTimeout) {
		p.t.Fatalf("%s: %s: no answer within %v", p.name, what, wireTimeout)
	}
	if err := tok.Error(); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

func (p *pahoClient) publish(topic string, qos byte, retained bool, payload string) {
	p.t.Helper()
	p.wait(p.c.Publish(topic, qos, retained, payload), "publish "+topic)
}

// subscribe subscribes to filter and returns the SUBACK's code.
func (p *pahoClient) subscribe(filter string, qos byte) byte {
	p.t.Helper()
	tok := p.c.Subscribe(filter, qos, nil)
	p.wait(tok, "subscribe "+filter)
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// expect reads messages until one on topic with payload arrives, and
// returns it.
func (p *pahoClient) expect(topic, payload string) paho.Message {
	p.t.Helper()
	deadline := time.After(wireTimeout)
	for {
		select {
		case m := <-p.msgs:
			if m.Topic() == topic && string(m.Payload()) == payload {
				return m
			}
		case <-deadline:
			p.t.Fatalf("%s: no %q on %s within %v", p.name, payload, topic, wireTimeout)
		}
	}
}

// cut closes the TCP connection without DISCONNECT.
func (p *pahoClient) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nc.Close()
}

// haDiscovery is the part of a Home Assistant MQTT discovery config the
// flow reads.
type haDiscovery struct {
	Name              string `json:"name"`
	UniqueID          string `json:"unique_id"`
	StateTopic        string `json:"state_topic"`
	ValueTemplate     string `json:"value_template"`
	UnitOfMeasurement string `json:"unit_of_measurement"`
	AvailabilityTopic string `json:"availability_topic"`
}

// TestHomeAssistantFlow runs a Home Assistant-like client and a
// Zigbee2MQTT-like bridge through a real `feedmq serve`, each a device
// with access rules set with `feedmq device allow`: the bridge announces
// itself online (retained, with a retained offline will) and publishes
// retained discovery configs under homeassistant/sensor/<id>/config; Home
// Assistant publishes its retained birth message on homeassistant/status,
// discovers the sensors from the retained configs, follows their state
// and availability topics, and sees the bridge go offline when its
// connection dies. After a restart of the broker the retained configs,
// availability and birth message are all still there, and the flow
// resumes. A device without rules is refused the discovery tree.
func TestHomeAssistantFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	data := t.TempDir()
	srv := startServe(t, data)
	b := &freeBroker{t: t, addr: srv.addr, data: data, devices: map[string]ruledDevice{}}
	b.device("homeassistant", "readwrite homeassistant/#", "read zigbee2mqtt/#", "write zigbee2mqtt/+/set")
	b.device("zigbee2mqtt", "readwrite zigbee2mqtt/#", "write homeassistant/#", "read homeassistant/status")
	b.device("stranger")
	var logs string
	haFlow(t, b, func() {
		logs += srv.logs.String()
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := srv.wait(); err != nil {
			t.Fatalf("serve did not stop cleanly: %v\n%s", err, srv.logs.String())
		}
		srv = startServe(t, data)
		b.addr = srv.addr
	})
	logs += srv.logs.String()
	for name, d := range b.devices {
		if strings.Contains(logs, d.Password) {
			t.Errorf("the server log holds the password of device %s", name)
		}
	}
}

// haFlow runs the Home Assistant flow on b, whose devices homeassistant,
// zigbee2mqtt and stranger exist; restart restarts the broker.
func haFlow(t *testing.T, b *freeBroker, restart func()) {
	dev := func(name string) ruledDevice {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.devices[name]
	}

	sensors := map[string]haDiscovery{
		"living_room_temperature": {Name: "Living room temperature", UniqueID: "living_room_temperature",
			StateTopic: "zigbee2mqtt/living_room", ValueTemplate: "{{ value_json.temperature }}",
			UnitOfMeasurement: "°C", AvailabilityTopic: "zigbee2mqtt/bridge/state"},
		"living_room_humidity": {Name: "Living room humidity", UniqueID: "living_room_humidity",
			StateTopic: "zigbee2mqtt/living_room", ValueTemplate: "{{ value_json.humidity }}",
			UnitOfMeasurement: "%", AvailabilityTopic: "zigbee2mqtt/bridge/state"},
	}
	configs := map[string]string{}
	for id, s := range sensors {
		j, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		configs["homeassistant/sensor/"+id+"/config"] = string(j)
	}

	// The bridge: online/offline on zigbee2mqtt/bridge/state, retained,
	// the offline one as its will; discovery again whenever Home
	// Assistant announces itself.
	startBridge := func(addr string) *pahoClient {
		o := paho.NewClientOptions().SetCleanSession(true).SetKeepAlive(60*time.Second).
			SetWill("zigbee2mqtt/bridge/state", "offline", 1, true)
		br := pahoConnect(t, addr, "bridge", dev("zigbee2mqtt"), o)
		br.publish("zigbee2mqtt/bridge/state", 1, true, "online")
		for topic, c := range configs {
			br.publish(topic, 1, true, c)
		}
		if code := br.subscribe("homeassistant/status", 1); code != 1 {
			t.Fatalf("bridge: SUBACK %#x for homeassistant/status", code)
		}
		return br
	}
	// Home Assistant: birth and will on homeassistant/status, both
	// retained here so that a bridge starting later knows; discovery,
	// then the state and availability topics the configs name.
	startHA := func(addr string) (*pahoClient, map[string]paho.Message) {
		o := paho.NewClientOptions().SetCleanSession(true).SetKeepAlive(60*time.Second).
			SetWill("homeassistant/status", "offline", 1, true)
		ha := pahoConnect(t, addr, "homeassistant", dev("homeassistant"), o)
		ha.publish("homeassistant/status", 1, true, "online")
		if code := ha.subscribe("homeassistant/+/+/config", 0); code != 0 {
			t.Fatalf("homeassistant: SUBACK %#x for the discovery filter", code)
		}
		found := map[string]paho.Message{}
		for len(found) < len(configs) {
			m := ha.expectAny()
			if want, ok := configs[m.Topic()]; ok && string(m.Payload()) == want && m.Retained() {
				found[m.Topic()] = m
			}
		}
		subscribed := map[string]bool{}
		for _, m := range found {
			var d haDiscovery
			if err := json.Unmarshal(m.Payload(), &d); err != nil {
				t.Fatalf("discovery config %s: %v", m.Topic(), err)
			}
			for _, topic := range []string{d.StateTopic, d.AvailabilityTopic} {
				if !subscribed[topic] {
					subscribed[topic] = true
					if code := ha.subscribe(topic, 1); code != 1 {
						t.Fatalf("homeassistant: SUBACK %#x for %s", code, topic)
					}
				}
			}
		}
		return ha, found
	}

	br := startBridge(b.addr)
	ha, _ := startHA(b.addr)
	if m := ha.expect("zigbee2mqtt/bridge/state", "online"); !m.Retained() {
		t.Fatal("availability online not delivered as retained to a new subscriber")
	}
	// The bridge hears Home Assistant's birth and announces again.
	br.expect("homeassistant/status", "online")
	for topic, c := range configs {
		br.publish(topic, 1, true, c)
	}
	state := `{"temperature":21.5,"humidity":48,"linkquality":120}`
	br.publish("zigbee2mqtt/living_room", 0, false, state)
	ha.expect("zigbee2mqtt/living_room", state)

	// A device without rules gets nothing of this (on a broker with
	// access rules).
	if b.data != "" {
		st := pahoConnect(t, b.addr, "stranger", dev("stranger"), paho.NewClientOptions().SetCleanSession(true))
		if code := st.subscribe("homeassistant/#", 1); code != 0x80 {
			t.Fatalf("a device without rules: SUBACK %#x for homeassistant/#, want 0x80", code)
		}
		st.c.Disconnect(250)
	}

	// The bridge loses power: its will marks it offline.
	br.cut()
	if m := ha.expect("zigbee2mqtt/bridge/state", "offline"); m.Retained() {
		t.Fatal("a will delivered to a live subscriber kept its retain flag")
	}
	ha.c.Disconnect(250)

	// Restart the broker: every retained message is still there.
	restart()

	ha, found := startHA(b.addr)
	if len(found) != len(configs) {
		t.Fatalf("after a restart Home Assistant discovered %d of %d sensors", len(found), len(configs))
	}
	if m := ha.expect("zigbee2mqtt/bridge/state", "offline"); !m.Retained() {
		t.Fatal("the retained will is not retained after a restart")
	}
	br = startBridge(b.addr)
	if m := br.expect("homeassistant/status", "online"); !m.Retained() {
		t.Fatal("Home Assistant's birth message is not retained after a restart")
	}
	ha.expect("zigbee2mqtt/bridge/state", "online")
	state = `{"temperature":22,"humidity":47,"linkquality":118}`
	br.publish("zigbee2mqtt/living_room", 1, false, state)
	ha.expect("zigbee2mqtt/living_room", state)

	// Home Assistant dies in turn: the bridge sees its will.
	ha.cut()
	br.expect("homeassistant/status", "offline")
}

// expectAny returns the next message.
func (p *pahoClient) expectAny() paho.Message {
	p.t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(wireTimeout):
		p.t.Fatalf("%s: no message within %v", p.name, wireTimeout)
	}
	return nil
}
