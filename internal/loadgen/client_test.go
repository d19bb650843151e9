package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestAppendConnect(t *testing.T) {
	got := AppendConnect(nil, Options{ClientID: "c", Username: "u", Password: "pw", Keepalive: 60})
	want := []byte{
		0x10, 20, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level 4 (3.1.1)
		0xc2,  // username, password, clean session
		0, 60, // keepalive
		0, 1, 'c',
		0, 1, 'u',
		0, 2, 'p', 'w',
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
	// Anonymous: only the clean-session flag.
	got = AppendConnect(nil, Options{ClientID: "x"})
	if got[9] != 0x02 || got[1] != byte(len(got)-2) {
		t.Fatalf("anonymous CONNECT % x", got)
	}
}

func TestAppendPublish(t *testing.T) {
	got := AppendPublish(nil, "a/b", 1, 0x0102, []byte("hi"))
	want := []byte{0x32, 9, 0, 3, 'a', '/', 'b', 1, 2, 'h', 'i'}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
	got = AppendPublish(nil, "a", 0, 7, nil)
	if want := []byte{0x30, 3, 0, 1, 'a'}; !bytes.Equal(got, want) {
		t.Fatalf("QoS 0: got % x, want % x", got, want)
	}
}

func TestAppendSubscribe(t *testing.T) {
	got := AppendSubscribe(nil, 5, []string{"a/#", "b"})
	want := []byte{0x82, 12, 0, 5, 0, 3, 'a', '/', '#', 0, 0, 1, 'b', 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

// Remaining lengths at the boundaries of 1, 2, 3 and 4 encoded bytes
// survive encoding and ReadPacket.
func TestRemainingLengthRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152} {
		payload := bytes.Repeat([]byte{'x'}, n)
		b := AppendPublish(nil, "t", 0, 0, payload)
		hdr := len(b) - (3 + n)
		var wantHdr int
		switch {
		case n+3 < 128:
			wantHdr = 2
		case n+3 < 16384:
			wantHdr = 3
		case n+3 < 2097152:
			wantHdr = 4
		default:
			wantHdr = 5
		}
		if hdr != wantHdr {
			t.Errorf("payload %d: fixed header %d bytes, want %d", n, hdr, wantHdr)
		}
		p, _, err := ReadPacket(bufio.NewReader(bytes.NewReader(b)), nil)
		if err != nil {
			t.Fatalf("payload %d: %v", n, err)
		}
		pub, err := DecodePublish(p)
		if err != nil || string(pub.Topic) != "t" || len(pub.Payload) != n || pub.QoS != 0 {
			t.Fatalf("payload %d: %+v %v", n, pub.QoS, err)
		}
	}
}

func TestReadPacketErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"five length bytes": {[]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformed},
		"short body":        {[]byte{0x30, 5, 0, 1}, io.ErrUnexpectedEOF},
		"no length":         {[]byte{0x30}, io.ErrUnexpectedEOF},
		"empty":             {nil, io.EOF},
	} {
		_, _, err := ReadPacket(bufio.NewReader(bytes.NewReader(tc.in)), nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestDecodePublish(t *testing.T) {
	p, _, err := ReadPacket(bufio.NewReader(bytes.NewReader(AppendPublish(nil, "x/y", 1, 42, []byte("body")))), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := DecodePublish(p)
	if err != nil || pub.QoS != 1 || pub.ID != 42 || string(pub.Topic) != "x/y" || string(pub.Payload) != "body" {
		t.Fatalf("got %+v %v", pub, err)
	}
	for name, p := range map[string]Packet{
		"not a publish":    {Type: typePuback, Body: []byte{0, 1}},
		"topic too long":   {Type: typePublish, Body: []byte{0, 9, 'a'}},
		"QoS 3":            {Type: typePublish, Flags: 6, Body: []byte{0, 1, 'a'}},
		"QoS 1 without ID": {Type: typePublish, Flags: 2, Body: []byte{0, 1, 'a', 0}},
		"empty":            {Type: typePublish},
	} {
		if _, err := DecodePublish(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if id, err := DecodePuback(Packet{Type: typePuback, Body: []byte{1, 2}}); err != nil || id != 0x0102 {
		t.Fatalf("PUBACK: %d %v", id, err)
	}
}

// The publish and read paths reuse their buffers.
func TestNoAllocations(t *testing.T) {
	buf := make([]byte, 0, 256)
	payload := []byte("field1=1&field2=2")
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendPublish(buf[:0], "channels/1/publish", 1, 7, payload)
	}); n != 0 {
		t.Errorf("AppendPublish: %v allocations", n)
	}
	stream := bytes.Repeat(AppendPublish(nil, "channels/1/subscribe", 0, 0, payload), 200)
	r := bufio.NewReader(bytes.NewReader(stream))
	rbuf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		var p Packet
		var err error
		p, rbuf, err = ReadPacket(r, rbuf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodePublish(p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadPacket: %v allocations", n)
	}
}

func TestStamp(t *testing.T) {
	for in, want := range map[string]int64{
		"field1=3&field2=12345": 12345,
		`{"channel_id":1,"field1":"3","field2":"987","field3":null}`: 987,
		"field1=3":        -1,
		`{"field2":null}`: -1,
		"field2=":         -1,
	} {
		got, ok := stamp([]byte(in))
		if want < 0 {
			if ok {
				t.Errorf("%s: got %d, want none", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s: got %d %v, want %d", in, got, ok, want)
		}
	}
}
