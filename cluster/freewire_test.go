package cluster

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func fullMessage() *channels.Message {
	return &channels.Message{Topic: "zigbee2mqtt/lamp/set", Payload: []byte(`{"state":"ON"}`), QoS: 1,
		PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "application/json",
		ResponseTopic: "ha/reply/é", CorrelationData: []byte{0, 1, 0xff}, MessageExpiry: 1<<32 - 1,
		User: []channels.UserProperty{{Key: "k", Val: "v"}, {Key: "k", Val: ""}, {Key: "", Val: "x"}}}
}

func TestFreeRoundTrip(t *testing.T) {
	for _, m := range []*channels.Message{
		fullMessage(),
		{Topic: "a", QoS: 0},
		{Topic: "home/hall/temp", Payload: []byte("21.5"), QoS: 2},
		{Topic: "t", Payload: bytes.Repeat([]byte{0}, 70000), PayloadFormatFlag: true},
	} {
		b := AppendFree(nil, m, "n1")
		if len(b) != FreeSize(m, "n1") {
			t.Errorf("%q: FreeSize %d, encoded %d", m.Topic, FreeSize(m, "n1"), len(b))
		}
		got, origin, err := DecodeFree(b, len(b))
		if err != nil {
			t.Fatalf("%q: %v", m.Topic, err)
		}
		if origin != "n1" {
			t.Errorf("origin %q", origin)
		}
		if len(got.Payload) == 0 && len(m.Payload) == 0 {
			got.Payload = m.Payload
		}
		if !reflect.DeepEqual(&got, m) {
			t.Errorf("decoded %+v\nwant    %+v", got, *m)
		}
		if _, _, err := DecodeFree(b, len(b)-1); err == nil || !strings.Contains(err.Error(), "over") {
			t.Errorf("%q: one byte over the limit: %v", m.Topic, err)
		}
	}
}

// The encoding of a small sensor publish stays small: it crosses NATS
// once per publish.
func TestFreeCompact(t *testing.T) {
	m := &channels.Message{Topic: "home/hall/temp", Payload: []byte("21.5")}
	if n := len(AppendFree(nil, m, "n1")); n > len(m.Topic)+len(m.Payload)+16 {
		t.Errorf("%d bytes for a %d-byte topic and %d-byte payload", n, len(m.Topic), len(m.Payload))
	}
}

func TestDecodeFree(t *testing.T) {
	good := AppendFree(nil, &channels.Message{Topic: "a/b", Payload: []byte("p")}, "n1")
	// hdr builds a message from its header and fields.
	hdr := func(version, flags, format byte, fields ...string) []byte {
		b := []byte{version, flags, format}
		for _, f := range fields {
			b = appendField(b, f)
		}
		return b
	}
	tail := []byte{0, 0} // no expiry, no user properties
	msg := func(origin, topic, content, response, corr string) []byte {
		return append(hdr(1, 0, 0, origin, topic, content, response, corr), tail...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		err  string
	}{
		{"good", good, ""},
		{"empty", nil, "truncated header"},
		{"two bytes", []byte{1, 0}, "truncated header"},
		{"version 2", append([]byte{2}, good[1:]...), "unknown version"},
		{"unknown flag", append([]byte{1, 0x08}, good[2:]...), "unknown flags"},
		{"qos 3", append([]byte{1, 3}, good[2:]...), "QoS 3"},
		{"format without flag", append([]byte{1, 0, 1}, good[3:]...), "payload format"},
		{"format 2", append([]byte{1, 4, 2}, good[3:]...), "payload format"},
		{"format 1", append([]byte{1, 4, 1}, good[3:]...), ""},
		{"truncated origin", hdr(1, 0, 0)[:3], "origin: bad or truncated"},
		{"origin past end", append(hdr(1, 0, 0), 5, 'n'), "origin: length 5 past"},
		{"huge length", append(hdr(1, 0, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "past the message"},
		{"overlong varint", append(hdr(1, 0, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "bad or truncated"},
		{"origin empty", msg("", "a", "", "", ""), "origin node: empty"},
		{"origin with dot", msg("n.1", "a", "", "", ""), "origin node"},
		{"origin too long", msg(strings.Repeat("n", 65), "a", "", "", ""), "origin node"},
		{"topic empty", msg("n1", "", "", "", ""), "topic: empty"},
		{"topic plus", msg("n1", "a/+/b", "", "", ""), "wildcard"},
		{"topic hash", msg("n1", "a/#", "", "", ""), "wildcard"},
		{"topic channels", msg("n1", "channels/1/publish", "", "", ""), "reserved"},
		{"topic devices", msg("n1", "devices/x", "", "", ""), "reserved"},
		{"topic sys", msg("n1", "$SYS/x", "", "", ""), "reserved"},
		{"topic refused will", msg("n1", "$feedmq/refused-will", "", "", ""), "reserved"},
		{"topic NUL", msg("n1", "a\x00b", "", "", ""), "topic: not UTF-8"},
		{"topic bad UTF-8", msg("n1", "a\xffb", "", "", ""), "topic: not UTF-8"},
		{"topic too long", msg("n1", strings.Repeat("t", 65536), "", "", ""), "over 65535"},
		{"content bad UTF-8", msg("n1", "a", "\xc3", "", ""), "content type"},
		{"response wildcard", msg("n1", "a", "", "r/#", ""), "response topic has a wildcard"},
		{"correlation binary", msg("n1", "a", "", "", "\xff\x00"), ""},
		{"padded length", append(hdr(1, 0, 0), 0x82, 0x00, 'n', '1'), "bad or truncated"},
		{"truncated expiry", hdr(1, 0, 0, "n1", "a", "", "", ""), "message expiry"},
		{"expiry over 32 bits", append(hdr(1, 0, 0, "n1", "a", "", "", ""), 0x80, 0x80, 0x80, 0x80, 0x10, 0), "expiry over"},
		{"user count lies", append(hdr(1, 0, 0, "n1", "a", "", "", ""), 0, 0xff, 0xff, 0xff, 0xff, 0x0f), "user property count"},
		{"user key bad", append(append(hdr(1, 0, 0, "n1", "a", "", "", ""), 0, 1), appendField(appendField(nil, "\xff"), "v")...), "user property name"},
		{"user value missing", append(append(hdr(1, 0, 0, "n1", "a", "", "", ""), 0, 1), appendField(nil, "k")...), "user property value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeFree(tc.in, 1<<20)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
		})
	}
}

// FuzzDecodeFree: any message from NATS is refused, or decodes to a
// message on a free topic from a valid node that encodes back to the
// same bytes (nothing in it was ignored or altered).
func FuzzDecodeFree(f *testing.F) {
	f.Add(AppendFree(nil, fullMessage(), "n1"))
	f.Add(AppendFree(nil, &channels.Message{Topic: "a"}, "n"))
	f.Add([]byte{1, 0, 0, 2, 'n', '1', 1, '#', 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 2, 'n', '1', 1, 'a', 0, 0, 0, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, origin, err := DecodeFree(b, 1<<16)
		if err != nil {
			return
		}
		if ValidName(origin) != nil || freeTopicName(m.Topic) != nil || m.QoS > 2 {
			t.Fatalf("%q decoded to an invalid message %+v from %q", b, m, origin)
		}
		if again := AppendFree(nil, &m, origin); !bytes.Equal(again, b) {
			t.Fatalf("%q decoded to %+v, which encodes to %q", b, m, again)
		}
	})
}
