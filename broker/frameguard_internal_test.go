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

// FuzzFrameGuard feeds any bytes to the guard, whole and in chunks of
// every size a read may return: it must never panic, and how the bytes
// are split must not change what it concludes.
func FuzzFrameGuard(f *testing.F) {
	f.Add(mqtttest.Connect{ClientID: "g", Clean: true, Version: 5}.Encode(), uint8(3))
	f.Add(append(mqtttest.Connect{ClientID: "g", Clean: true}.Encode(),
		mqtttest.PublishPacket("channels/1/publish", []byte("field1=1"))...), uint8(1))
	f.Add([]byte{0x10, 0xFA, 0xFF, 0x03}, uint8(2))
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		whole := frameGuard{maxPacket: 1 << 10}
		errWhole := whole.observe(b)
		split := frameGuard{maxPacket: 1 << 10}
		errSplit := feed(&split, b, int(chunk)%64+1)
		if !errors.Is(errSplit, errWhole) && errSplit != errWhole {
			t.Fatalf("whole: %v, in chunks of %d: %v", errWhole, int(chunk)%64+1, errSplit)
		}
		if whole.state != split.state || whole.packets != split.packets || whole.tooLarge != split.tooLarge ||
			whole.level != split.level {
			t.Fatalf("whole %+v, in chunks %+v", whole, split)
		}
		if errWhole == nil && whole.packets > 0 && whole.headLen > len(whole.head) {
			t.Fatalf("head overflow: %d", whole.headLen)
		}
	})
}
