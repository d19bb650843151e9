package broker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// pubBody builds a PUBLISH body: topic, packet ID (QoS > 0), MQTT 5
// properties (props, with their length) and payload.
func pubBody(topic string, id uint16, v5 bool, props []byte, payload string) []byte {
	b := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	if id != 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	if v5 {
		b = append(b, byte(len(props)))
		b = append(b, props...)
	}
	return append(b, payload...)
}

func TestDecodePublish(t *testing.T) {
	const topic = "channels/7/publish"
	tests := []struct {
		name    string
		hb      byte
		body    []byte
		v5      bool
		ok      bool
		qos     byte
		id      uint16
		payload string
	}{
		{"qos0", 0x30, pubBody(topic, 0, false, nil, "field1=1"), false, true, 0, 0, "field1=1"},
		{"qos1", 0x32, pubBody(topic, 9, false, nil, "field1=1"), false, true, 1, 9, "field1=1"},
		{"qos1 dup retain", 0x3B, pubBody(topic, 9, false, nil, "x"), false, true, 1, 9, "x"},
		{"empty payload", 0x30, pubBody(topic, 0, false, nil, ""), false, true, 0, 0, ""},
		{"v5 no properties", 0x32, pubBody(topic, 3, true, nil, "a"), true, true, 1, 3, "a"},
		{"v5 qos0 no properties", 0x30, pubBody(topic, 0, true, nil, "a"), true, true, 0, 0, "a"},
		{"v5 properties", 0x32, pubBody(topic, 3, true, []byte{0x01, 1}, "a"), true, false, 0, 0, ""},
		{"v5 topic alias", 0x30, pubBody(topic, 0, true, []byte{0x23, 0, 1}, "a"), true, false, 0, 0, ""},
		{"v5 no property length", 0x30, pubBody(topic, 0, false, nil, ""), true, false, 0, 0, ""},
		{"qos2", 0x34, pubBody(topic, 9, false, nil, "x"), false, false, 0, 0, ""},
		{"qos3", 0x36, pubBody(topic, 9, false, nil, "x"), false, false, 0, 0, ""},
		{"packet id 0", 0x32, append(pubBody(topic, 0, false, nil, ""), 0, 0, 'x'), false, false, 0, 0, ""},
		{"packet id cut", 0x32, append(pubBody(topic, 0, false, nil, ""), 1), false, false, 0, 0, ""},
		{"empty topic", 0x30, pubBody("", 0, false, nil, "x"), false, false, 0, 0, ""},
		{"topic past the end", 0x30, []byte{0, 40, 'c'}, false, false, 0, 0, ""},
		{"one byte", 0x30, []byte{0}, false, false, 0, 0, ""},
		{"nothing", 0x30, nil, false, false, 0, 0, ""},
		{"topic NUL", 0x30, pubBody("channels/7/\x00", 0, false, nil, "x"), false, false, 0, 0, ""},
		{"topic bad UTF-8", 0x30, pubBody("channels/\xff/publish", 0, false, nil, "x"), false, false, 0, 0, ""},
		{"topic wildcard", 0x30, pubBody("channels/+/publish", 0, false, nil, "x"), false, false, 0, 0, ""},
		{"topic hash", 0x30, pubBody("channels/#", 0, false, nil, "x"), false, false, 0, 0, ""},
		{"dup at qos0", 0x38, pubBody(topic, 0, false, nil, "x"), false, false, 0, 0, ""},
		{"not a publish", 0x82, pubBody(topic, 1, false, nil, ""), false, false, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := decodePublish(tt.hb, tt.body, tt.v5)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(f.topic) != topic || f.qos != tt.qos || f.id != tt.id || string(f.payload) != tt.payload {
				t.Errorf("got topic %q qos %d id %d payload %q", f.topic, f.qos, f.id, f.payload)
			}
			if f.dup != (tt.hb&8 != 0) || f.retain != (tt.hb&1 != 0) {
				t.Errorf("dup %v retain %v from %#x", f.dup, f.retain, tt.hb)
			}
		})
	}
}

func TestPacketLength(t *testing.T) {
	tests := []struct {
		b         []byte
		rem, nlen int
		ok        bool
	}{
		{[]byte{0}, 0, 1, true},
		{[]byte{0x7f, 9}, 127, 1, true},
		{[]byte{0x80, 1}, 128, 2, true},
		{[]byte{0xff, 0xff, 0xff, 0x7f}, 268435455, 4, true},
		{[]byte{0x80}, 0, 0, false},
		{[]byte{0x80, 0x80, 0x80}, 0, 0, false},
		{nil, 0, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80}, 0, -1, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 1}, 0, -1, false},
	}
	for _, tt := range tests {
		rem, nlen, ok := packetLength(tt.b)
		if rem != tt.rem || nlen != tt.nlen || ok != tt.ok {
			t.Errorf("% x: got %d %d %v, want %d %d %v", tt.b, rem, nlen, ok, tt.rem, tt.nlen, tt.ok)
		}
	}
}

// FuzzDecodePublish checks the read path's decoder against mochi's: what
// it accepts, mochi decodes the same way and validates, with no
// properties; it never panics.
func FuzzDecodePublish(f *testing.F) {
	f.Add(byte(0x32), pubBody("channels/7/publish", 9, false, nil, "field1=1"), false)
	f.Add(byte(0x30), pubBody("channels/7/publish", 0, true, nil, "field1=1"), true)
	f.Add(byte(0x32), pubBody("channels/7/publish", 9, true, []byte{0x23, 0, 1}, "x"), true)
	f.Add(byte(0x34), pubBody("a/b", 9, false, nil, ""), false)
	f.Fuzz(func(t *testing.T, hb byte, body []byte, v5 bool) {
		fr, ok := decodePublish(hb, body, v5)
		if !ok {
			return
		}
		pk := packets.Packet{ProtocolVersion: 4}
		if v5 {
			pk.ProtocolVersion = 5
		}
		if err := pk.FixedHeader.Decode(hb); err != nil {
			t.Fatalf("mochi refuses the header %#x: %v", hb, err)
		}
		pk.FixedHeader.Remaining = len(body)
		if err := pk.PublishDecode(append([]byte(nil), body...)); err != nil {
			t.Fatalf("mochi refuses % x: %v", body, err)
		}
		if code := pk.PublishValidate(maxTopicAliases); code != packets.CodeSuccess {
			t.Fatalf("mochi finds % x invalid: %v", body, code)
		}
		if pk.TopicName != string(fr.topic) || pk.PacketID != fr.id || !bytes.Equal(pk.Payload, fr.payload) ||
			pk.FixedHeader.Qos != fr.qos || pk.FixedHeader.Dup != fr.dup || pk.FixedHeader.Retain != fr.retain {
			t.Fatalf("decoded differently: mochi %q %d %q, ours %q %d %q", pk.TopicName, pk.PacketID, pk.Payload,
				fr.topic, fr.id, fr.payload)
		}
		if v5 && !isEmptyProps(pk.Properties) {
			t.Fatalf("properties %+v taken as none", pk.Properties)
		}
		rem, nlen, ok := packetLength(body)
		if ok {
			r2, n2, err := packets.DecodeLength(bytes.NewReader(body))
			if err != nil || r2 != rem || n2 != nlen {
				t.Fatalf("length % x: ours %d/%d, mochi %d/%d %v", body, rem, nlen, r2, n2, err)
			}
		}
	})
}

func isEmptyProps(p packets.Properties) bool {
	return p.TopicAlias == 0 && !p.TopicAliasFlag && !p.PayloadFormatFlag && p.MessageExpiryInterval == 0 &&
		p.ContentType == "" && p.ResponseTopic == "" && len(p.CorrelationData) == 0 && len(p.User) == 0 &&
		len(p.SubscriptionIdentifier) == 0
}
