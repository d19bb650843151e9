package e2e

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freeBroker is a running broker and the clients a test may connect to it.
type freeBroker struct {
	t    *testing.T
	addr string
	data string

	mu      sync.Mutex
	devices map[string]ruledDevice
}

// ruledDevice is what `feedmq device create --json` prints.
type ruledDevice struct {
	ID       uint64 `json:"id"`
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// device returns the connect options of device name, creating it on first
// use with rules given as "ACCESS PATTERN" (read, write or readwrite), set
// the way a user would: with `feedmq device allow`.
func (b *freeBroker) device(name string, rules ...string) wireOpts {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data == "" { // a broker without feedmq's devices (Mosquitto): anonymous
		return wireOpts{ID: "interop-" + name, Clean: true}
	}
	d, ok := b.devices[name]
	if !ok {
		cli(b.t, b.data, &d, "device", "create", "--name", name, "--json")
		for _, r := range rules {
			allowRule(b.t, b.data, d.ID, r)
		}
		b.devices[name] = d
	}
	return wireOpts{ID: d.ClientID, User: d.Username, Pass: d.Password, Clean: true}
}

// allowRule gives device id the rule "ACCESS PATTERN" with the CLI.
func allowRule(t *testing.T, data string, id uint64, rule string) {
	t.Helper()
	access, pattern, ok := strings.Cut(rule, " ")
	if !ok {
		t.Fatalf("rule %q: want ACCESS PATTERN", rule)
	}
	args := []string{"device", "allow", strconv.FormatUint(id, 10), "--topic", pattern}
	switch access {
	case "read":
		args = append(args, "--read")
	case "write":
		args = append(args, "--write")
	case "readwrite":
		args = append(args, "--read", "--write")
	default:
		t.Fatalf("rule %q: unknown access", rule)
	}
	cli(t, data, nil, args...)
}

// TestFreeTopicInterop runs, against a real `feedmq serve`, what the
// Eclipse Paho MQTT 3.1.1 interoperability client tests check, on free
// topics with devices whose access rules allow them: QoS 0/1/2, retained
// messages, wills (on an unclean end and on keepalive expiry), zero-length
// client IDs, queueing for offline persistent sessions (of devices and
// of anonymous clients), overlapping
// subscriptions, redelivery on reconnect, subscribe failure for a topic
// the rules do not allow, $ topics out of wildcard reach, unsubscribe and
// QoS 2 exactly once; then that a persistent session's queue and the
// retained messages survive a restart.
func TestFreeTopicInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	data := t.TempDir()
	srv := startServe(t, data)
	b := &freeBroker{t: t, addr: srv.addr, data: data, devices: map[string]ruledDevice{}}
	interopSuite(t, b, func() {
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := srv.wait(); err != nil {
			t.Fatalf("serve did not stop cleanly: %v\n%s", err, srv.logs.String())
		}
		srv = startServe(t, data)
		b.addr = srv.addr
	})
}

// interopSuite runs the interoperability checks on b; restart (nil: skip
// those checks) restarts the broker on the same data.
func interopSuite(t *testing.T, b *freeBroker, restart func()) {
	rw := "readwrite interop/#"

	t.Run("basic", func(t *testing.T) {
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		a.mustSub("interop/basic", 2)
		for q := range byte(3) {
			a.pub("interop/basic", "qos "+strconv.Itoa(int(q)), q, false)
		}
		for q := range byte(3) {
			m := a.next()
			if m.Topic != "interop/basic" || m.Payload != "qos "+strconv.Itoa(int(q)) || m.QoS != q || m.Retain {
				t.Fatalf("message %d: %v", q, m)
			}
		}
		// A second CONNECT on a connection is a protocol violation: the
		// broker closes it.
		if err := a.write(connectPacket(b.device("a"))); err != nil {
			t.Fatal(err)
		}
		a.waitClosed()
		// So is an unknown protocol name.
		o := b.device("a")
		o.Protocol = "hj"
		if w, _, code := dialWire(t, b.addr, "a", o); w != nil || code == 0 {
			t.Fatalf("CONNECT with protocol name hj accepted (code %d)", code)
		}
	})

	t.Run("retained", func(t *testing.T) {
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		for q, topic := range []string{"interop/ret/q0", "interop/ret/q1", "interop/ret/q2"} {
			a.pub(topic, "retained "+topic, byte(q), true)
		}
		a.mustSub("interop/ret/+", 2)
		var got []string
		for range 3 {
			m := a.next()
			if !m.Retain || m.Payload != "retained "+m.Topic {
				t.Fatalf("not a retained message: %v", m)
			}
			got = append(got, m.Topic)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"interop/ret/q0", "interop/ret/q1", "interop/ret/q2"}) {
			t.Fatalf("retained topics %v", got)
		}
		// A live subscriber gets a retained publish without the retain
		// flag: it is news, not the stored state.
		a.pub("interop/ret/live", "now", 1, true)
		if m := a.next(); m.Topic != "interop/ret/live" || m.Retain {
			t.Fatalf("live retained publish delivered as %v", m)
		}
		a.disconnect()

		// An empty retained payload clears the topic.
		a, _ = connectWire(t, b.addr, "a", b.device("a"))
		for q, topic := range []string{"interop/ret/q0", "interop/ret/q1", "interop/ret/q2", "interop/ret/live"} {
			a.pub(topic, "", byte(q%3), true)
		}
		a.mustSub("interop/ret/+", 2)
		a.pub("interop/ret/mark", "mark", 1, false)
		if got := a.until("interop/ret/mark", "mark"); len(got) != 0 {
			t.Fatalf("cleared retained messages still delivered: %v", got)
		}
		a.disconnect()
	})

	t.Run("will", func(t *testing.T) {
		w := &msg{Topic: "interop/will/a", Payload: "client not disconnected", QoS: 1}
		oa := b.device("a", rw)
		oa.Will, oa.Keepalive = w, 60
		sub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		sub.mustSub("interop/will/#", 2)
		a, _ := connectWire(t, b.addr, "a", oa)
		a.drop()
		if m := sub.next(); m.Topic != w.Topic || m.Payload != w.Payload || m.QoS != 1 {
			t.Fatalf("will: %v", m)
		}
		// A clean DISCONNECT discards the will.
		a, _ = connectWire(t, b.addr, "a", oa)
		a.disconnect()
		a, _ = connectWire(t, b.addr, "a", b.device("a"))
		a.pub("interop/will/mark", "mark", 1, false)
		if got := sub.until("interop/will/mark", "mark"); len(got) != 0 {
			t.Fatalf("will published after a clean DISCONNECT: %v", got)
		}
		a.disconnect()
		sub.disconnect()
	})

	t.Run("keepalive", func(t *testing.T) {
		// A client silent for 1.5 times its keepalive is cut off, and its
		// will published. The wire client sends no PINGREQ.
		sub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		sub.mustSub("interop/keepalive", 2)
		oa := b.device("a", rw)
		oa.Keepalive = 2
		oa.Will = &msg{Topic: "interop/keepalive", Payload: "keepalive expiry"}
		a, _ := connectWire(t, b.addr, "a", oa)
		if !a.closed(3 * wireTimeout) {
			t.Fatal("a client silent past its keepalive was not disconnected")
		}
		if m := sub.next(); m.Topic != "interop/keepalive" || m.Payload != "keepalive expiry" {
			t.Fatalf("will after keepalive expiry: %v", m)
		}
		sub.disconnect()
	})

	t.Run("zero length client id", func(t *testing.T) {
		// Only a clean session may go without a client ID (it is
		// anonymous: a device connects with its own ID).
		if w, _, code := dialWire(t, b.addr, "anon", wireOpts{Clean: false}); w != nil || code != 2 {
			t.Fatalf("persistent session without client ID: CONNACK code %d, want 2 (identifier rejected)", code)
		}
		w, _ := connectWire(t, b.addr, "anon", wireOpts{Clean: true})
		w.disconnect()
	})

	t.Run("offline message queueing", func(t *testing.T) {
		oa := b.device("a", rw)
		oa.Clean = false
		a, _ := connectWire(t, b.addr, "a", oa)
		a.mustSub("interop/offline/+", 2)
		a.disconnect()

		pub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		pub.pub("interop/offline/q0", "qos 0", 0, false)
		pub.pub("interop/offline/q1", "qos 1", 1, false)
		pub.pub("interop/offline/q2", "qos 2", 2, false)
		pub.disconnect()

		a, present := connectWire(t, b.addr, "a", oa)
		if !present {
			t.Fatal("CONNACK session present = 0 for a persistent session")
		}
		// QoS 0 may be queued too; QoS 1 and 2 must be, in order.
		m := a.next()
		if m.Topic == "interop/offline/q0" {
			m = a.next()
		}
		if m.Topic != "interop/offline/q1" || m.QoS != 1 {
			t.Fatalf("first queued message: %v", m)
		}
		if m = a.next(); m.Topic != "interop/offline/q2" || m.QoS != 2 {
			t.Fatalf("second queued message: %v", m)
		}
		a.disconnect()
		clearSession(t, b, "a")
	})

	t.Run("anonymous persistent session", func(t *testing.T) {
		// The Paho suite connects without a username: anonymous clients
		// keep sessions too, under the anonymous rules.
		if b.data != "" {
			cli(t, b.data, nil, "device", "allow", "anonymous", "--topic", "interop/anon/#", "--read")
		}
		o := wireOpts{ID: "interop-anon", Clean: false}
		a, _ := connectWire(t, b.addr, "anon", o)
		a.mustSub("interop/anon/+", 1)
		a.disconnect()
		pub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		pub.pub("interop/anon/q1", "for anon", 1, false)
		pub.disconnect()
		a, present := connectWire(t, b.addr, "anon", o)
		if !present {
			t.Fatal("CONNACK session present = 0 for an anonymous persistent session")
		}
		if m := a.next(); m.Topic != "interop/anon/q1" || m.Payload != "for anon" {
			t.Fatalf("queued for an anonymous session: %v", m)
		}
		a.disconnect()
		o.Clean = true
		a, _ = connectWire(t, b.addr, "anon", o)
		a.disconnect()
	})

	t.Run("overlapping subscriptions", func(t *testing.T) {
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		codes := a.sub([]string{"interop/over/#", "interop/over/+"}, 2, 1)
		if !slices.Equal(codes, []byte{2, 1}) {
			t.Fatalf("SUBACK %v", codes)
		}
		a.pub("interop/over/x", "overlapping", 2, false)
		a.pub("interop/over/mark", "mark", 0, false)
		got := a.until("interop/over/mark", "mark")
		// One message at the highest QoS of the matching subscriptions,
		// or one per subscription at each one's QoS.
		switch {
		case len(got) == 1 && got[0].QoS == 2:
		case len(got) == 2 && got[0].QoS+got[1].QoS == 3:
		default:
			t.Fatalf("overlapping subscriptions delivered %v", got)
		}
		a.disconnect()
	})

	t.Run("redelivery on reconnect", func(t *testing.T) {
		ob := b.device("b", rw)
		ob.Clean = false
		w, _ := connectWire(t, b.addr, "b", ob)
		w.mustSub("interop/redeliver/#", 2)
		w.pause()
		w.pub("interop/redeliver/q1", "qos 1", 1, false)
		w.pub("interop/redeliver/q2", "qos 2", 2, false)
		for _, want := range []string{"interop/redeliver/q1", "interop/redeliver/q2"} {
			if m := w.next(); m.Topic != want || m.Dup {
				t.Fatalf("first delivery: %v, want %s", m, want)
			}
		}
		w.disconnect()

		w, present := connectWire(t, b.addr, "b", ob)
		if !present {
			t.Fatal("CONNACK session present = 0 for a persistent session")
		}
		// Both again, flagged DUP, in any order (they are on two topics).
		if got := w.topics(2, true); !slices.Equal(got, []string{"interop/redeliver/q1 dup", "interop/redeliver/q2 dup"}) {
			t.Fatalf("redelivered %v, want q1 and q2 with DUP", got)
		}
		w.pub("interop/redeliver/mark", "mark", 1, false)
		if got := w.until("interop/redeliver/mark", "mark"); len(got) != 0 {
			t.Fatalf("more than the two unacknowledged messages: %v", got)
		}
		w.disconnect()
		clearSession(t, b, "b")
	})

	t.Run("subscribe failure", func(t *testing.T) {
		if b.data == "" {
			t.Skip("no access rules")
		}
		// No rule covers test/nosubscribe: SUBACK 0x80 and the rest of
		// the SUBSCRIBE still granted.
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		if codes := a.sub([]string{"test/nosubscribe", "interop/subfail"}, 2, 1); !slices.Equal(codes, []byte{0x80, 1}) {
			t.Fatalf("SUBACK %#v, want [0x80 1]", codes)
		}
		// A read-only device may subscribe but its publishes go nowhere.
		ro, _ := connectWire(t, b.addr, "ro", b.device("ro", "read interop/subfail"))
		ro.mustSub("interop/subfail", 1)
		ro.pub("interop/subfail", "denied", 1, false)
		a.pub("interop/subfail", "mark", 1, false)
		if got := a.until("interop/subfail", "mark"); len(got) != 0 {
			t.Fatalf("a publish the rules deny was delivered: %v", got)
		}
		if got := ro.until("interop/subfail", "mark"); len(got) != 0 {
			t.Fatalf("a publish the rules deny was delivered: %v", got)
		}
		a.disconnect()
		ro.disconnect()
	})

	t.Run("dollar topics", func(t *testing.T) {
		// A filter starting with a wildcard matches no $ topic. A broker
		// may refuse the $ publish itself (feedmq closes the connection,
		// as for any topic it does not serve), so it comes from a
		// connection of its own.
		w, _ := connectWire(t, b.addr, "all", b.device("all", "readwrite #"))
		w.mustSub("+/+/+", 1)
		d, _ := connectWire(t, b.addr, "dollar", b.device("dollar", rw))
		if err := d.write(publishPacket(msg{Topic: "$interop/dollar/x", Payload: "dollar", QoS: 1, ID: 1})); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.acks: // PUBACK: accepted, or dropped quietly
		case <-d.done: // refused
		case <-time.After(wireTimeout):
			t.Fatal("a publish on a $ topic got neither PUBACK nor a closed connection")
		}
		w.pub("interop/dollar/mark", "mark", 1, false)
		if got := w.until("interop/dollar/mark", "mark"); len(got) != 0 {
			t.Fatalf("a wildcard filter received $ topics: %v", got)
		}
		w.disconnect()
	})

	t.Run("unsubscribe", func(t *testing.T) {
		sub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		for _, f := range []string{"interop/unsub/a", "interop/unsub/b", "interop/unsub/c"} {
			sub.mustSub(f, 2)
		}
		sub.unsub("interop/unsub/a")
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		for _, topic := range []string{"interop/unsub/a", "interop/unsub/b", "interop/unsub/c"} {
			a.pub(topic, topic, 1, false)
		}
		a.pub("interop/unsub/c", "mark", 1, false)
		var got []string
		for _, m := range sub.until("interop/unsub/c", "mark") {
			got = append(got, m.Topic)
		}
		if !slices.Equal(got, []string{"interop/unsub/b", "interop/unsub/c"}) {
			t.Fatalf("after unsubscribing interop/unsub/a: %v", got)
		}
		a.disconnect()
		sub.disconnect()
	})

	t.Run("qos 2 exactly once", func(t *testing.T) {
		// A publisher that resends its QoS 2 PUBLISH (DUP) before PUBREL
		// has it delivered once.
		sub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		sub.mustSub("interop/once", 2)
		a, _ := connectWire(t, b.addr, "a", b.device("a", rw))
		m := msg{Topic: "interop/once", Payload: "once", QoS: 2, ID: 4242}
		if err := a.write(publishPacket(m)); err != nil {
			t.Fatal(err)
		}
		a.waitAck(pPubrec, m.ID)
		m.Dup = true
		if err := a.write(publishPacket(m)); err != nil {
			t.Fatal(err)
		}
		a.waitAck(pPubrec, m.ID)
		if err := a.ack(pPubrel, m.ID); err != nil {
			t.Fatal(err)
		}
		a.waitAck(pPubcomp, m.ID)
		a.pub("interop/once", "mark", 2, false)
		got := sub.until("interop/once", "mark")
		if len(got) != 1 || got[0].Payload != "once" || got[0].QoS != 2 {
			t.Fatalf("QoS 2 publish sent twice before PUBREL delivered as %v", got)
		}
		a.disconnect()
		sub.disconnect()
	})

	t.Run("restart keeps sessions and retained", func(t *testing.T) {
		if restart == nil {
			t.Skip("no restart")
		}
		oa := b.device("a", rw)
		oa.Clean = false
		a, _ := connectWire(t, b.addr, "a", oa)
		a.mustSub("interop/restart/+", 1)
		a.disconnect()
		pub, _ := connectWire(t, b.addr, "b", b.device("b", rw))
		pub.pub("interop/restart/queued", "queued", 1, false)
		pub.pub("interop/restart/kept", "kept", 1, true)
		pub.disconnect()

		restart()
		a, present := connectWire(t, b.addr, "a", oa)
		if !present {
			t.Fatal("a persistent session did not survive the restart")
		}
		// In any order; mochi flags them DUP, having stored them as in
		// flight (MQTT wants DUP only on a resend; clients ignore it).
		if got := a.topics(2, false); !slices.Equal(got, []string{"interop/restart/kept", "interop/restart/queued"}) {
			t.Fatalf("queued messages after restart: %v", got)
		}
		a.disconnect()
		clearSession(t, b, "a")

		c, _ := connectWire(t, b.addr, "b", b.device("b"))
		c.mustSub("interop/restart/+", 1)
		if m := c.next(); m.Topic != "interop/restart/kept" || !m.Retain {
			t.Fatalf("retained message after restart: %v", m)
		}
		c.pub("interop/restart/kept", "", 1, true)
		c.disconnect()
	})
}

// clearSession ends device name's persistent session with a clean
// connect, so that later subtests start without its subscriptions.
func clearSession(t *testing.T, b *freeBroker, name string) {
	t.Helper()
	o := b.device(name)
	o.Clean = true
	w, present := connectWire(t, b.addr, name, o)
	if present {
		t.Fatalf("%s: a clean session reported session present", name)
	}
	w.disconnect()
}
