package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// wire is a small MQTT 3.1.1 client for the free-topic tests: it speaks
// every QoS in both directions, wills, retained flags and persistent
// sessions, and it can stop acknowledging what it receives, which no
// client library lets a test do. A reader goroutine answers the broker's
// QoS handshakes and queues the messages and acknowledgements.
type wire struct {
	t    *testing.T
	name string
	nc   net.Conn

	wmu sync.Mutex // one writer at a time: the test and the reader

	msgs chan msg    // application messages, once per QoS 2 exchange
	acks chan packet // everything but PUBLISH and PUBREL
	done chan struct{}

	mu     sync.Mutex
	paused bool            // leave incoming PUBLISHes unacknowledged
	qos2   map[uint16]bool // QoS 2 IDs received, until their PUBREL
	nextID uint16
}

// msg is a PUBLISH, sent or received.
type msg struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
	Dup     bool
	ID      uint16
}

func (m msg) String() string {
	return fmt.Sprintf("%s %q qos=%d retain=%v dup=%v", m.Topic, m.Payload, m.QoS, m.Retain, m.Dup)
}

type packet struct {
	typ, flags byte
	body       []byte
}

const (
	pConnect     = 1
	pConnack     = 2
	pPublish     = 3
	pPuback      = 4
	pPubrec      = 5
	pPubrel      = 6
	pPubcomp     = 7
	pSubscribe   = 8
	pSuback      = 9
	pUnsubscribe = 10
	pUnsuback    = 11
	pPingreq     = 12
	pPingresp    = 13
	pDisconnect  = 14
)

// wireOpts is a CONNECT.
type wireOpts struct {
	ID, User, Pass string
	Clean          bool
	Keepalive      uint16
	Will           *msg
	Protocol       string // "MQTT" unless set
}

// wireTimeout bounds every wait for the broker.
const wireTimeout = 10 * time.Second

// refusedClosed is dialWire's code for a connection the broker closed
// without a CONNACK, as it may for a CONNECT it cannot parse.
const refusedClosed = 0xff

// dialWire connects and returns the client, the CONNACK's session-present
// flag and return code; the client is nil when the code is not 0.
func dialWire(t *testing.T, addr, name string, o wireOpts) (*wire, bool, byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wireTimeout)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { nc.Close() })
	w := &wire{t: t, name: name, nc: nc, msgs: make(chan msg, 1024), acks: make(chan packet, 64),
		done: make(chan struct{}), qos2: map[uint16]bool{}}
	if _, err := nc.Write(connectPacket(o)); err != nil {
		t.Fatalf("%s: CONNECT: %v", name, err)
	}
	r := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(wireTimeout))
	p, err := readPacket(r)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil, false, refusedClosed
	}
	if err != nil {
		t.Fatalf("%s: waiting for CONNACK: %v", name, err)
	}
	if p.typ != pConnack || len(p.body) != 2 {
		t.Fatalf("%s: expected CONNACK, got packet type %d", name, p.typ)
	}
	if p.body[1] != 0 {
		nc.Close()
		return nil, false, p.body[1]
	}
	_ = nc.SetReadDeadline(time.Time{})
	go w.read(r)
	return w, p.body[0]&1 == 1, 0
}

// connectWire connects and fails the test unless the broker accepts.
func connectWire(t *testing.T, addr, name string, o wireOpts) (*wire, bool) {
	t.Helper()
	w, present, code := dialWire(t, addr, name, o)
	if code != 0 {
		t.Fatalf("%s: CONNACK return code %d", name, code)
	}
	return w, present
}

func connectPacket(o wireOpts) []byte {
	proto := o.Protocol
	if proto == "" {
		proto = "MQTT"
	}
	b := appendStr(nil, proto)
	b = append(b, 4)
	var flags byte
	if o.Clean {
		flags |= 0x02
	}
	if o.Will != nil {
		flags |= 0x04 | o.Will.QoS<<3
		if o.Will.Retain {
			flags |= 0x20
		}
	}
	if o.User != "" {
		flags |= 0x80
	}
	if o.Pass != "" {
		flags |= 0x40
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, o.Keepalive)
	b = appendStr(b, o.ID)
	if o.Will != nil {
		b = appendStr(b, o.Will.Topic)
		b = appendStr(b, o.Will.Payload)
	}
	if o.User != "" {
		b = appendStr(b, o.User)
	}
	if o.Pass != "" {
		b = appendStr(b, o.Pass)
	}
	return mqtttest.Packet(pConnect<<4, b)
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func readPacket(r *bufio.Reader) (packet, error) {
	h, err := r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return packet{}, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return packet{}, errors.New("malformed remaining length")
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return packet{}, err
	}
	return packet{typ: h >> 4, flags: h & 0x0f, body: body}, nil
}

func (w *wire) write(b []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.nc.SetWriteDeadline(time.Now().Add(wireTimeout))
	_, err := w.nc.Write(b)
	return err
}

func (w *wire) ack(typ byte, id uint16) error {
	flags := byte(0)
	if typ == pPubrel {
		flags = 0x02
	}
	return w.write(mqtttest.Packet(typ<<4|flags, binary.BigEndian.AppendUint16(nil, id)))
}

// read runs until the connection ends: it decodes PUBLISHes, answers
// their handshakes (unless paused) and queues what the test waits for.
func (w *wire) read(r *bufio.Reader) {
	defer close(w.done)
	for {
		p, err := readPacket(r)
		if err != nil {
			return
		}
		switch p.typ {
		case pPublish:
			m, err := decodePublish(p)
			if err != nil {
				w.t.Errorf("%s: %v", w.name, err)
				return
			}
			w.mu.Lock()
			paused, seen := w.paused, w.qos2[m.ID]
			if m.QoS == 2 && !paused {
				w.qos2[m.ID] = true
			}
			w.mu.Unlock()
			if paused {
				// Counted as received, but left unacknowledged so that
				// the broker must send it again.
				w.msgs <- m
				continue
			}
			switch m.QoS {
			case 1:
				_ = w.ack(pPuback, m.ID)
			case 2:
				_ = w.ack(pPubrec, m.ID)
				if seen {
					continue // a resend before PUBREL: delivered once
				}
			}
			w.msgs <- m
		case pPubrel:
			id := binary.BigEndian.Uint16(p.body)
			w.mu.Lock()
			delete(w.qos2, id)
			w.mu.Unlock()
			_ = w.ack(pPubcomp, id)
		default:
			w.acks <- p
		}
	}
}

func decodePublish(p packet) (msg, error) {
	if len(p.body) < 2 {
		return msg{}, errors.New("short PUBLISH")
	}
	m := msg{QoS: p.flags >> 1 & 3, Retain: p.flags&1 == 1, Dup: p.flags&8 != 0}
	tl := int(binary.BigEndian.Uint16(p.body))
	rest := p.body[2:]
	if tl > len(rest) {
		return msg{}, errors.New("short PUBLISH topic")
	}
	m.Topic, rest = string(rest[:tl]), rest[tl:]
	if m.QoS > 0 {
		if len(rest) < 2 {
			return msg{}, errors.New("PUBLISH without packet ID")
		}
		m.ID, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	m.Payload = string(rest)
	return m, nil
}

func (w *wire) id() uint16 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextID = w.nextID%65535 + 1
	return w.nextID
}

// waitAck returns the next acknowledgement of type typ for packet id.
func (w *wire) waitAck(typ byte, id uint16) packet {
	w.t.Helper()
	deadline := time.After(wireTimeout)
	for {
		select {
		case p := <-w.acks:
			if p.typ == typ && len(p.body) >= 2 && binary.BigEndian.Uint16(p.body) == id {
				return p
			}
			if p.typ != pPingresp {
				w.t.Fatalf("%s: waiting for packet type %d id %d, got type %d", w.name, typ, id, p.typ)
			}
		case <-w.done:
			w.t.Fatalf("%s: connection closed while waiting for packet type %d", w.name, typ)
		case <-deadline:
			w.t.Fatalf("%s: no packet type %d for id %d within %v", w.name, typ, id, wireTimeout)
		}
	}
}

// pub publishes m and, for QoS 1 and 2, waits until the broker completed
// its side of the handshake.
func (w *wire) pub(topic, payload string, qos byte, retain bool) {
	w.t.Helper()
	m := msg{Topic: topic, Payload: payload, QoS: qos, Retain: retain}
	if qos > 0 {
		m.ID = w.id()
	}
	if err := w.write(publishPacket(m)); err != nil {
		w.t.Fatalf("%s: PUBLISH %s: %v", w.name, topic, err)
	}
	switch qos {
	case 1:
		w.waitAck(pPuback, m.ID)
	case 2:
		w.waitAck(pPubrec, m.ID)
		if err := w.ack(pPubrel, m.ID); err != nil {
			w.t.Fatalf("%s: PUBREL: %v", w.name, err)
		}
		w.waitAck(pPubcomp, m.ID)
	}
}

func publishPacket(m msg) []byte {
	b := appendStr(nil, m.Topic)
	if m.QoS > 0 {
		b = binary.BigEndian.AppendUint16(b, m.ID)
	}
	b = append(b, m.Payload...)
	h := byte(pPublish<<4) | m.QoS<<1
	if m.Retain {
		h |= 1
	}
	if m.Dup {
		h |= 8
	}
	return mqtttest.Packet(h, b)
}

// sub subscribes to filters at the QoS given for each and returns the
// SUBACK's return codes.
func (w *wire) sub(filters []string, qos ...byte) []byte {
	w.t.Helper()
	id := w.id()
	b := binary.BigEndian.AppendUint16(nil, id)
	for i, f := range filters {
		b = appendStr(b, f)
		b = append(b, qos[i])
	}
	if err := w.write(mqtttest.Packet(pSubscribe<<4|0x02, b)); err != nil {
		w.t.Fatalf("%s: SUBSCRIBE: %v", w.name, err)
	}
	p := w.waitAck(pSuback, id)
	if len(p.body)-2 != len(filters) {
		w.t.Fatalf("%s: SUBACK has %d codes for %d filters", w.name, len(p.body)-2, len(filters))
	}
	return p.body[2:]
}

// mustSub subscribes to one filter and fails unless granted qos.
func (w *wire) mustSub(filter string, qos byte) {
	w.t.Helper()
	if got := w.sub([]string{filter}, qos); got[0] != qos {
		w.t.Fatalf("%s: SUBSCRIBE %s at QoS %d: SUBACK %#x", w.name, filter, qos, got[0])
	}
}

func (w *wire) unsub(filters ...string) {
	w.t.Helper()
	id := w.id()
	b := binary.BigEndian.AppendUint16(nil, id)
	for _, f := range filters {
		b = appendStr(b, f)
	}
	if err := w.write(mqtttest.Packet(pUnsubscribe<<4|0x02, b)); err != nil {
		w.t.Fatalf("%s: UNSUBSCRIBE: %v", w.name, err)
	}
	w.waitAck(pUnsuback, id)
}

// pause stops acknowledging incoming PUBLISHes.
func (w *wire) pause() {
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
}

// disconnect sends DISCONNECT (a clean end: no will) and waits for the
// broker to close the connection.
func (w *wire) disconnect() {
	w.t.Helper()
	_ = w.write([]byte{pDisconnect << 4, 0})
	w.waitClosed()
}

// drop closes the TCP connection without DISCONNECT, as a device losing
// power does: the broker must publish its will.
func (w *wire) drop() {
	w.nc.Close()
	<-w.done
}

// waitClosed waits until the broker has closed the connection.
func (w *wire) waitClosed() {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(wireTimeout):
		w.t.Fatalf("%s: the broker did not close the connection within %v", w.name, wireTimeout)
	}
	w.nc.Close()
}

// closed reports whether the broker closed the connection within d.
func (w *wire) closed(d time.Duration) bool {
	select {
	case <-w.done:
		return true
	case <-time.After(d):
		return false
	}
}

// next returns the next message received.
func (w *wire) next() msg {
	w.t.Helper()
	select {
	case m := <-w.msgs:
		return m
	case <-time.After(wireTimeout):
		w.t.Fatalf("%s: no message within %v", w.name, wireTimeout)
	}
	return msg{}
}

// until returns every message received up to and including the first on
// topic with payload: a marker published after what is being checked, so
// that "nothing else arrived" needs no sleep (a broker delivers one
// publisher's messages to a subscriber in order).
func (w *wire) until(topic, payload string) []msg {
	w.t.Helper()
	var got []msg
	for {
		m := w.next()
		if m.Topic == topic && m.Payload == payload {
			return got
		}
		got = append(got, m)
	}
}

// topics returns the topics of the next n messages, sorted, each with
// " dup" when it was flagged DUP and dup is set.
func (w *wire) topics(n int, dup bool) []string {
	w.t.Helper()
	got := make([]string, n)
	for i := range got {
		m := w.next()
		got[i] = m.Topic
		if m.Dup && dup {
			got[i] += " dup"
		}
	}
	slices.Sort(got)
	return got
}

// none fails if a message is waiting.
func (w *wire) none() {
	w.t.Helper()
	select {
	case m := <-w.msgs:
		w.t.Fatalf("%s: unexpected message %v", w.name, m)
	default:
	}
}
