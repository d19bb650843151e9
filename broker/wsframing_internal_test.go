package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/mqtttest"
)

func wsUnconnected(s *Server) int {
	s.unconnected.mu.Lock()
	defer s.unconnected.mu.Unlock()
	return s.unconnected.list.Len()
}

// After upgrades that fail in every way, and upgraded sockets that end
// before or after CONNECT, nothing is counted as unconnected, no handler
// goroutine is left, and the listener tracks no connection.
func TestWebSocketUpgradeFailuresAccounting(t *testing.T) {
	s, err := New(Options{MQTTAddr: "off", WSAddr: "127.0.0.1:0", Anonymous: false, ConnectTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, noStore{}, auth.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr("ws").String()
	runtime.GC()
	g0 := runtime.NumGoroutine()
	good := "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
	frame := func(b []byte) []byte {
		out := []byte{0x82, 0x80 | byte(len(b)), 0, 0, 0, 0}
		return append(out, b...)
	}
	cases := []struct {
		name string
		send []byte
	}{
		{"bad version", []byte("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")},
		{"data before the answer", append([]byte(good), frame([]byte{0xc0, 0})...)},
		{"post", []byte("POST /mqtt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")},
		{"half a request", []byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n")},
		{"upgraded, then gone", []byte(good)},
		{"upgraded, refused CONNECT", nil},
		{"upgraded, text frame", nil},
	}
	for round := range 5 {
		for _, tc := range cases {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			switch tc.name {
			case "upgraded, refused CONNECT", "upgraded, text frame":
				io.WriteString(c, good)
				r := bufio.NewReader(c)
				resp, err := http.ReadResponse(r, nil)
				if err != nil || resp.StatusCode != 101 {
					t.Fatalf("%s: %v %v", tc.name, resp, err)
				}
				if tc.name == "upgraded, text frame" {
					c.Write([]byte{0x81, 0x80, 0, 0, 0, 0})
				} else {
					c.Write(frame(mqtttest.Connect{ClientID: fmt.Sprint("x", round), Username: "nobody", Password: "wrong", Clean: true}.Encode()))
				}
				io.Copy(io.Discard, r)
			default:
				c.Write(tc.send)
				if tc.name != "half a request" {
					c.(*net.TCPConn).CloseWrite()
					io.Copy(io.Discard, c)
				}
			}
			c.Close()
		}
	}
	// A handler ends some time after its client: wait for the last.
	ws := s.listeners["ws"].(*wsListener)
	tracked := func() int {
		ws.connSet.mu.Lock()
		defer ws.connSet.mu.Unlock()
		return len(ws.connSet.set)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (wsUnconnected(s) != 0 || tracked() != 0 || runtime.NumGoroutine() > g0+maxIdleHandlers) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := wsUnconnected(s); n != 0 {
		t.Errorf("%d sockets still counted as unconnected", n)
	}
	if live := tracked(); live != 0 {
		t.Errorf("%d connections still tracked", live)
	}
	t.Logf("goroutines: %d before, %d after", g0, runtime.NumGoroutine())
}

// refDecode is a plain, whole-input decoder of client frames (RFC 6455
// §5), for comparison: the data, the control frames, and the close code
// of the violation (0: none; 1: ended by the client's close).
func refDecode(in []byte, limit uint64) (data []byte, ctl []string, code uint16) {
	inMsg := false
	var msg uint64
	for len(in) > 0 {
		if len(in) < 2 {
			if in[0]&0 == 0 && len(in) == 1 {
				return data, ctl, 0
			}
		}
		if len(in) >= 2 && in[1]&0x80 == 0 {
			return data, ctl, 1002
		}
		if len(in) < 2 {
			return data, ctl, 0
		}
		b0, b1 := in[0], in[1]
		hl := 2
		var n uint64
		switch b1 & 0x7f {
		case 126:
			hl += 2
			if len(in) < hl+4 {
				return data, ctl, 0
			}
			n = uint64(in[2])<<8 | uint64(in[3])
		case 127:
			hl += 8
			if len(in) < hl+4 {
				return data, ctl, 0
			}
			for _, x := range in[2:10] {
				n = n<<8 | uint64(x)
			}
			if n>>63 != 0 {
				return data, ctl, 1002
			}
		default:
			n = uint64(b1 & 0x7f)
		}
		if len(in) < hl+4 {
			return data, ctl, 0
		}
		key := in[hl : hl+4]
		hl += 4
		fin, op := b0&0x80 != 0, b0&0x0f
		if b0&0x70 != 0 {
			return data, ctl, 1002
		}
		switch op {
		case 8, 9, 10:
			if !fin || n > 125 {
				return data, ctl, 1002
			}
		case 1, 2:
			if inMsg {
				return data, ctl, 1002
			}
			if op == 1 {
				return data, ctl, 1003
			}
			msg = 0
		case 0:
			if !inMsg {
				return data, ctl, 1002
			}
		default:
			return data, ctl, 1002
		}
		if op < 8 {
			msg += n
			if limit > 0 && msg > limit {
				return data, ctl, 1009
			}
			inMsg = !fin
		}
		avail := uint64(len(in) - hl)
		take := min(n, avail)
		p := make([]byte, take)
		for i := range p {
			p[i] = in[hl+i] ^ key[i%4]
		}
		in = in[hl+int(take):]
		if op < 8 {
			data = append(data, p...)
			if take < n {
				return data, ctl, 0
			}
			continue
		}
		if take < n {
			return data, ctl, 0
		}
		if op == 8 {
			if len(p) == 1 {
				return data, ctl, 1002
			}
			if len(p) >= 2 && !utf8Valid(p[2:]) {
				return data, ctl, 1007
			}
			ctl = append(ctl, fmt.Sprintf("%x:%q", op, p))
			return data, ctl, 1
		}
		if op == 9 {
			ctl = append(ctl, fmt.Sprintf("%x:%q", op, p))
		}
	}
	return data, ctl, 0
}

func FuzzWSReaderReference(f *testing.F) {
	f.Add(clientFrame(0x82, []byte{0x10, 2, 3}, testKey, -1), uint64(0))
	f.Add(clientFrame(0x88, []byte{3, 0xe8, 'a'}, testKey, -1), uint64(0))
	f.Add(append(clientFrame(0x02, []byte("ab"), testKey, -1), clientFrame(0x89, []byte("x"), testKey, -1)...), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, limit uint64) {
		data, ctl, err := decodeAll(in, limit, 3, 1, 7)
		rd, rctl, rcode := refDecode(in, limit)
		var code uint16
		var we *wsError
		switch {
		case err == errWSClosed:
			code = 1
		case errors.As(err, &we):
			code = we.code
		case err != nil:
			t.Fatal(err)
		}
		if !bytes.Equal(data, rd) || fmt.Sprint(ctl) != fmt.Sprint(rctl) || code != rcode {
			t.Fatalf("decoder: %q %v %d\nreference: %q %v %d", data, ctl, code, rd, rctl, rcode)
		}
	})
}
func utf8Valid(b []byte) bool { return utf8.Valid(b) }
