package broker

import (
	"errors"
	"testing"

	"github.com/feedmq/feedmq/internal/mqtttest"
)

// feed hands b to g in chunks of n bytes, as reads of any size would.
func feed(g *frameGuard, b []byte, n int) error {
	for len(b) > 0 {
		k := min(n, len(b))
		if err := g.observe(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

func TestFrameGuard(t *testing.T) {
	connect5 := mqtttest.Connect{ClientID: "g", Clean: true, Version: 5}.Encode()
	connect4 := mqtttest.Connect{ClientID: "g", Clean: true}.Encode()
	small := mqtttest.PublishPacket("channels/1/publish", []byte("field1=1"))
	huge := []byte{0x30, 0x80, 0x80, 0x08} // PUBLISH declaring 128 KiB
	for _, n := range []int{1, 3, 1024} {
		g := frameGuard{maxPacket: 64 << 10}
		if err := feed(&g, []byte{0x10, 0xFA, 0xFF, 0x03}, n); !errors.Is(err, errConnectTooLarge) {
			t.Errorf("chunks of %d: oversized CONNECT: %v", n, err)
		}
		g = frameGuard{maxPacket: 64 << 10}
		if err := feed(&g, []byte{0x10, 0xE8, 0xFB, 0x83, 0x80, 0x00}, n); !errors.Is(err, errMalformedLength) {
			t.Errorf("chunks of %d: CONNECT length padded to five bytes: %v", n, err)
		}
		for _, tc := range []struct {
			connect []byte
			owed    bool
		}{{connect5, true}, {connect4, false}} {
			g = frameGuard{maxPacket: 64 << 10}
			stream := append(append(append([]byte{}, tc.connect...), small...), small...)
			if err := feed(&g, stream, n); err != nil || g.tooLarge {
				t.Fatalf("chunks of %d: CONNECT and publishes: %v, too large %v", n, err, g.tooLarge)
			}
			if err := feed(&g, huge, n); err != nil || g.owesFarewell() != tc.owed {
				t.Errorf("chunks of %d, level %d: huge packet: %v, owes DISCONNECT %v", n, g.level, err, g.owesFarewell())
			}
		}
	}
}
