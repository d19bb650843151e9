package broker

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// chunkSource hands out data in the chunk sizes cuts gives, then EOF.
type chunkSource struct {
	data []byte
	cuts []byte
	i    int
}

func (s *chunkSource) rawRead(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if len(s.cuts) > 0 {
		n = int(s.cuts[s.i%len(s.cuts)])%64 + 1
		s.i++
	}
	n = copy(p, s.data[:min(n, len(s.data))])
	s.data = s.data[n:]
	return n, nil
}

func (s *chunkSource) SetDeadline(time.Time) error { return nil }

func (s *chunkSource) readEmpty() bool { return len(s.data) == 0 }

// fill fills a buffer from readBufs, as conn does.
func (s *chunkSource) fill() (*[]byte, int, error) {
	b := readBufs.Get().(*[]byte)
	n, err := s.rawRead(*b)
	if n == 0 {
		readBufs.Put(b)
		return nil, 0, err
	}
	return b, n, err
}

// passThrough reads everything through a read path whose client has no
// session (so no publish is consumed), with mochi's reads sized by
// sizes, and returns what mochi got. mochi reads byte by byte too and,
// with await, waits in await (on even sizes) between reads.
func passThrough(t *testing.T, data, cuts, sizes []byte, await bool) []byte {
	src := &chunkSource{data: data, cuts: cuts}
	rp := readPath{src: src}
	rp.start(&Server{opts: Options{MaxPacketSize: 1 << 20}}, &mqtt.Client{}, src)
	return readAll(t, &rp, data, sizes, await)
}

func readAll(t *testing.T, rp *readPath, data, sizes []byte, await bool) []byte {
	var out []byte
	for i := 0; ; i++ {
		n := 1024
		if len(sizes) > 0 {
			n = int(sizes[i%len(sizes)])*8 + 1
			if await && sizes[i%len(sizes)]%2 == 0 {
				if err := rp.await(); errors.Is(err, io.EOF) {
					return out
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if sizes[i%len(sizes)]%3 == 0 {
				n = 1
			}
		}
		p := make([]byte, n)
		k, err := rp.read(p)
		out = append(out, p[:k]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if i > 10*len(data)+10 {
			t.Fatalf("no end after %d reads", i)
		}
	}
}

// FuzzReadPathSplit: whatever the bytes and however the socket and mochi
// cut them, the read path hands mochi every byte it does not consume,
// once, in order (with no session, it consumes none).
func FuzzReadPathSplit(f *testing.F) {
	pub := func(topic, payload string, qos byte) []byte {
		b := append([]byte{0, byte(len(topic))}, topic...)
		if qos > 0 {
			b = append(b, 0, 7)
		}
		b = append(b, payload...)
		return append([]byte{0x30 | qos<<1, byte(len(b))}, b...)
	}
	stream := append(append([]byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 0}, pub("channels/1/publish", "field1=1", 1)...),
		pub("home/x", "y", 0)...)
	f.Add(stream, []byte{1}, []byte{0})
	f.Add(stream, []byte{}, []byte{})
	f.Add(append(stream, 0xc0, 0), []byte{3, 5, 63}, []byte{1, 200})
	big := append([]byte{0x30, 0x90, 0x4e, 0, 1, 'x'}, bytes.Repeat([]byte{'z'}, 10_000-3)...)
	f.Add(append(big, stream...), []byte{63}, []byte{127})
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 1}, []byte{1}, []byte{0})
	f.Fuzz(func(t *testing.T, data, cuts, sizes []byte) {
		for _, await := range []bool{false, true} {
			if got := passThrough(t, data, cuts, sizes, await); !bytes.Equal(got, data) {
				t.Fatalf("await %v: mochi got\n% x\nwant\n% x", await, got, data)
			}
		}
	})
}

// TestReadPathPartialAtEnd: a packet cut short by the end of the stream
// still reaches mochi (which then reads the error), as without the read
// path.
func TestReadPathPartialAtEnd(t *testing.T) {
	data := []byte{0x30, 20, 0, 18, 'c', 'h', 'a', 'n'}
	for _, cuts := range [][]byte{nil, {0}, {2}} {
		if got := passThrough(t, data, cuts, nil, false); !bytes.Equal(got, data) {
			t.Errorf("cuts %v: mochi got % x, want % x", cuts, got, data)
		}
		if got := passThrough(t, data, cuts, []byte{0, 3}, true); !bytes.Equal(got, data) {
			t.Errorf("awaiting, cuts %v: mochi got % x, want % x", cuts, got, data)
		}
	}
}
