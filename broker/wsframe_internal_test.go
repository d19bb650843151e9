package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// controls records the control frames a wsReader hands over.
type controls struct {
	got      []string
	closeErr error // returned for a close frame
}

func (c *controls) wsControl(op byte, payload []byte) error {
	c.got = append(c.got, fmt.Sprintf("%x:%q", op, payload))
	if op == wsClose {
		return c.closeErr
	}
	return nil
}

// clientFrame encodes a masked frame as a client sends it. b0 is the
// first byte (FIN, RSV and opcode); length, when not negative, overrides
// the length written in the header.
func clientFrame(b0 byte, payload []byte, key [4]byte, length int) []byte {
	n := len(payload)
	if length >= 0 {
		n = length
	}
	b := []byte{b0}
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

// ClientFrame is clientFrame, with the length it has, for the external
// tests' raw clients.
func ClientFrame(b0 byte, payload []byte, key [4]byte) []byte {
	return clientFrame(b0, payload, key, -1)
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// decodeAll feeds in to a fresh reader in pieces of the given sizes
// (cycled; none: all at once) and returns the data, the control frames
// and the error that ended it.
func decodeAll(in []byte, limit uint64, pieces ...int) ([]byte, []string, error) {
	r := &wsReader{limit: limit}
	h := &controls{closeErr: errWSClosed}
	var data []byte
	in = bytes.Clone(in)
	for k := 0; len(in) > 0; k++ {
		size := len(in)
		if len(pieces) > 0 {
			size = min(len(in), pieces[k%len(pieces)])
		}
		chunk := in[:size]
		in = in[size:]
		n, err := r.unframe(chunk, h)
		if n > len(chunk) {
			panic("more data than input")
		}
		data = append(data, chunk[:n]...)
		if err != nil {
			return data, h.got, err
		}
	}
	return data, h.got, nil
}

func TestWSReader(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4800 bytes: a 16-bit length
	huge := bytes.Repeat([]byte{0xa5}, 70000)             // a 64-bit length
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	for _, tc := range []struct {
		name   string
		in     []byte
		limit  uint64
		data   []byte
		ctl    []string
		code   uint16 // the close code of the error; 0: no error
		closed bool   // ended by the client's close frame
	}{
		{name: "one binary frame", in: clientFrame(0x82, []byte{0x10, 2, 3}, testKey, -1), data: []byte{0x10, 2, 3}},
		{name: "empty message", in: clientFrame(0x82, nil, testKey, -1)},
		{name: "16-bit length", in: clientFrame(0x82, long, testKey, -1), data: long},
		{name: "64-bit length", in: clientFrame(0x82, huge, testKey, -1), data: huge},
		{name: "fragmented with a ping inside", in: cat(
			clientFrame(0x02, []byte("ab"), testKey, -1),
			clientFrame(0x89, []byte("hi"), testKey, -1),
			clientFrame(0x00, []byte("cd"), [4]byte{1, 2, 3, 4}, -1),
			clientFrame(0x80, []byte("e"), testKey, -1),
			clientFrame(0x82, []byte("f"), testKey, -1)),
			data: []byte("abcdef"), ctl: []string{`9:"hi"`}},
		{name: "pong ignored", in: cat(clientFrame(0x8a, []byte("x"), testKey, -1), clientFrame(0x82, []byte("y"), testKey, -1)), data: []byte("y")},
		{name: "close with code", in: cat(clientFrame(0x82, []byte("z"), testKey, -1),
			clientFrame(0x88, []byte{0x03, 0xe8, 'b', 'y', 'e'}, testKey, -1), clientFrame(0x82, []byte("lost"), testKey, -1)),
			data: []byte("z"), ctl: []string{`8:"\x03\xe8bye"`}, closed: true},
		{name: "close without code", in: clientFrame(0x88, nil, testKey, -1), ctl: []string{`8:""`}, closed: true},
		{name: "close of one byte", in: clientFrame(0x88, []byte{3}, testKey, -1), code: wsCloseProtocol},
		{name: "close reason not UTF-8", in: clientFrame(0x88, []byte{3, 0xe8, 0xff}, testKey, -1), code: wsCloseInvalidData},
		{name: "text", in: cat(clientFrame(0x82, []byte("ok"), testKey, -1), clientFrame(0x81, []byte("{}"), testKey, -1)),
			data: []byte("ok"), code: wsCloseUnsupported},
		{name: "unmasked", in: []byte{0x82, 0x01, 'a'}, code: wsCloseProtocol},
		{name: "reserved bit", in: clientFrame(0xc2, []byte("a"), testKey, -1), code: wsCloseProtocol},
		{name: "reserved opcode", in: clientFrame(0x83, []byte("a"), testKey, -1), code: wsCloseProtocol},
		{name: "reserved control opcode", in: clientFrame(0x8b, []byte("a"), testKey, -1), code: wsCloseProtocol},
		{name: "fragmented ping", in: clientFrame(0x09, []byte("a"), testKey, -1), code: wsCloseProtocol},
		{name: "oversized ping", in: clientFrame(0x89, make([]byte, 126), testKey, -1), code: wsCloseProtocol},
		{name: "continuation first", in: clientFrame(0x80, []byte("a"), testKey, -1), code: wsCloseProtocol},
		{name: "message inside a message", in: cat(clientFrame(0x02, []byte("a"), testKey, -1), clientFrame(0x82, []byte("b"), testKey, -1)),
			data: []byte("a"), code: wsCloseProtocol},
		{name: "length over 2^63", in: append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, testKey[:]...), code: wsCloseProtocol},
		{name: "over the limit, refused from the header", in: clientFrame(0x82, nil, testKey, 1<<20), limit: 1000, code: wsCloseTooBig},
		{name: "at the limit", in: clientFrame(0x82, long[:1000], testKey, -1), limit: 1000, data: long[:1000]},
		{name: "fragments over the limit", in: cat(clientFrame(0x02, long[:600], testKey, -1), clientFrame(0x80, long[:600], testKey, -1)),
			limit: 1000, data: long[:600], code: wsCloseTooBig},
		{name: "the limit is per message", in: cat(clientFrame(0x82, long[:600], testKey, -1), clientFrame(0x82, long[:600], testKey, -1)),
			limit: 1000, data: append(bytes.Clone(long[:600]), long[:600]...)},
	} {
		for _, pieces := range [][]int{nil, {1}, {2, 3, 5}, {13}, {4096}} {
			t.Run(fmt.Sprintf("%s/%v", tc.name, pieces), func(t *testing.T) {
				data, ctl, err := decodeAll(tc.in, tc.limit, pieces...)
				if !bytes.Equal(data, tc.data) {
					t.Errorf("data %q, want %q", data, tc.data)
				}
				if fmt.Sprint(ctl) != fmt.Sprint(tc.ctl) {
					t.Errorf("control frames %v, want %v", ctl, tc.ctl)
				}
				var we *wsError
				switch {
				case tc.closed:
					if err != errWSClosed {
						t.Errorf("error %v, want the client's close", err)
					}
				case tc.code != 0:
					if !errors.As(err, &we) || we.code != tc.code {
						t.Errorf("error %v, want close code %d", err, tc.code)
					}
				case err != nil:
					t.Errorf("error %v", err)
				}
			})
		}
	}
}

// The decoding of a stream does not depend on how reads split it.
func FuzzWSReader(f *testing.F) {
	f.Add(clientFrame(0x82, []byte{0x10, 2, 3}, testKey, -1), uint8(1), uint64(0))
	f.Add(bytes.Join([][]byte{clientFrame(0x02, []byte("ab"), testKey, -1), clientFrame(0x89, []byte("hi"), testKey, -1),
		clientFrame(0x80, []byte("cd"), testKey, -1)}, nil), uint8(3), uint64(3))
	f.Add(clientFrame(0x82, bytes.Repeat([]byte{1}, 300), testKey, -1), uint8(7), uint64(1000))
	f.Add(clientFrame(0x88, []byte{3, 0xe8}, testKey, -1), uint8(2), uint64(0))
	f.Fuzz(func(t *testing.T, in []byte, piece uint8, limit uint64) {
		data, ctl, err := decodeAll(in, limit)
		data2, ctl2, err2 := decodeAll(in, limit, int(piece%16)+1, 1, int(piece))
		if !bytes.Equal(data, data2) || fmt.Sprint(ctl) != fmt.Sprint(ctl2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("whole: %q %v %v\nsplit: %q %v %v", data, ctl, err, data2, ctl2, err2)
		}
		if len(data) > len(in) {
			t.Fatalf("%d data bytes from %d", len(data), len(in))
		}
	})
}

// Random messages, fragmented at random with pings between the
// fragments, decode to what was sent, whatever the reads' sizes.
func TestWSReaderRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var in, want []byte
		var pings []string
		for range rng.IntN(5) + 1 {
			msg := make([]byte, rng.IntN(3000))
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			want = append(want, msg...)
			for first := true; ; first = false {
				k := min(len(msg), rng.IntN(800))
				fin := k == len(msg)
				var b0 byte
				if first {
					b0 = wsBinary
				}
				if fin {
					b0 |= 0x80
				}
				key := [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
				in = append(in, clientFrame(b0, msg[:k], key, -1)...)
				msg = msg[k:]
				if fin {
					break
				}
				if rng.IntN(3) == 0 {
					p := fmt.Sprint(rng.IntN(1000))
					pings = append(pings, fmt.Sprintf("9:%q", p))
					in = append(in, clientFrame(0x89, []byte(p), key, -1)...)
				}
			}
		}
		data, ctl, err := decodeAll(in, 0, rng.IntN(50)+1, rng.IntN(5000)+1)
		if err != nil || !bytes.Equal(data, want) || fmt.Sprint(ctl) != fmt.Sprint(pings) {
			t.Fatalf("error %v; %d bytes (want %d), equal %v; pings %v want %v", err, len(data), len(want), bytes.Equal(data, want), ctl, pings)
		}
	}
}

// Unmasking and the header of the broker's own frames allocate nothing.
func TestWSReaderAllocs(t *testing.T) {
	frame := clientFrame(0x82, bytes.Repeat([]byte{0x30}, 200), testKey, -1)
	buf := make([]byte, len(frame))
	r := &wsReader{}
	h := &controls{}
	if a := testing.AllocsPerRun(100, func() {
		copy(buf, frame)
		if n, err := r.unframe(buf, h); n != 200 || err != nil {
			t.Fatal(n, err)
		}
	}); a != 0 {
		t.Errorf("%v allocations per frame", a)
	}
	var hdr [10]byte
	for _, tc := range []struct {
		n    int
		want []byte
	}{{0, []byte{0x82, 0}}, {125, []byte{0x82, 125}}, {126, []byte{0x82, 126, 0, 126}},
		{65535, []byte{0x82, 126, 0xff, 0xff}}, {65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}}} {
		if got := appendWSHeader(hdr[:0], wsBinary, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("header of %d bytes: % x, want % x", tc.n, got, tc.want)
		}
	}
}
