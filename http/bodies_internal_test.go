package httpd

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bodyReq is a POST of body; length is its declared Content-Length (-1:
// unknown, as for a chunked body).
func bodyReq(body io.Reader, length int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/update", body)
	r.ContentLength = length
	return r
}

// A body is read into a buffer of its declared length, or one that grows
// by doubling from 4 KiB up to the limit when no length is declared; its
// size is reserved until done, and any error returns the reservation.
func TestBodyBudgetRead(t *testing.T) {
	errBroken := errors.New("connection reset")
	for _, tc := range []struct {
		name   string
		body   io.Reader
		length int64
		limit  int64
		want   int    // body length read
		maxCap int    // the buffer's capacity at most
		err    error  // read's error
		hdr    string // Connection header after it
	}{
		{"declared", strings.NewReader(strings.Repeat("a", 1000)), 1000, 65536, 1000, 1000, nil, ""},
		{"declared at the limit", strings.NewReader(strings.Repeat("a", 500)), 500, 500, 500, 500, nil, ""},
		{"empty", strings.NewReader(""), 0, 100, 0, 0, nil, ""},
		{"unknown length, small", strings.NewReader("field1=1"), -1, 65536, 8, bodyChunk, nil, ""},
		{"unknown length, 10000", strings.NewReader(strings.Repeat("a", 10000)), -1, 65536, 10000, 16 << 10, nil, ""},
		{"unknown length at the limit", strings.NewReader(strings.Repeat("a", 6000)), -1, 6000, 6000, 6000, nil, ""},
		{"declared over the limit", strings.NewReader(strings.Repeat("a", 101)), 101, 100, 0, 0, errBodyTooLarge, "close"},
		{"unknown length over the limit", strings.NewReader(strings.Repeat("a", 6001)), -1, 6000, 0, 0, errBodyTooLarge, "close"},
		{"client gone", io.MultiReader(strings.NewReader("abc"), errReader{errBroken}), 1000, 65536, 0, 0, errBodyRead, ""},
		{"client gone, unknown length", io.MultiReader(strings.NewReader(strings.Repeat("a", 5000)), errReader{errBroken}), -1, 65536, 0, 0, errBodyRead, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBodyBudget(1 << 20)
			w := httptest.NewRecorder()
			body, done, err := b.read(w, bodyReq(tc.body, tc.length), tc.limit)
			if err != tc.err {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if len(body) != tc.want || cap(body) > tc.maxCap {
				t.Errorf("read %d bytes into a buffer of %d, want %d into at most %d", len(body), cap(body), tc.want, tc.maxCap)
			}
			if got := w.Header().Get("Connection"); got != tc.hdr {
				t.Errorf("Connection: %q, want %q", got, tc.hdr)
			}
			if err == nil && b.inUse() != int64(cap(body)) {
				t.Errorf("%d bytes reserved while the body is held, want its buffer's %d", b.inUse(), cap(body))
			}
			done()
			if n := b.inUse(); n != 0 {
				t.Errorf("%d bytes still reserved after done", n)
			}
			done() // twice is harmless
			if n := b.inUse(); n != 0 {
				t.Errorf("%d bytes reserved after a second done", n)
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A spent budget refuses a declared body before reading any of it, and
// one of unknown length when its buffer would grow past the budget; what
// is released can be reserved again.
func TestBodyBudgetSpent(t *testing.T) {
	b := newBodyBudget(10000)
	first, done1, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader(strings.Repeat("a", 8000)), 8000), 65536)
	if err != nil || len(first) != 8000 {
		t.Fatalf("first body: %d bytes, %v", len(first), err)
	}
	// 2000 bytes are left: a small body still fits.
	_, done2, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader("field1=1"), 8), 65536)
	if err != nil {
		t.Fatalf("small body: %v", err)
	}
	done2()

	body := &countingReader{r: strings.NewReader(strings.Repeat("a", 3000))}
	w := httptest.NewRecorder()
	if _, _, err := b.read(w, bodyReq(body, 3000), 65536); err != errBodyBusy {
		t.Fatalf("declared 3000 with 2000 left: %v, want errBodyBusy", err)
	}
	if w.Header().Get("Retry-After") == "" || w.Header().Get("Connection") != "close" {
		t.Errorf("busy headers: %v", w.Header())
	}
	if body.n != 0 {
		t.Errorf("%d bytes of a refused declared body were read", body.n)
	}
	// Unknown length: 4 KiB, then 8 KiB do not fit.
	if _, _, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader(strings.Repeat("a", 3000)), -1), 65536); err != errBodyBusy {
		t.Fatalf("chunked 3000 with 2000 left: %v, want errBodyBusy", err)
	}
	if n := b.inUse(); n != 8000 {
		t.Fatalf("%d bytes reserved after the refusals, want the first body's 8000", n)
	}
	done1()
	if _, done, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader(strings.Repeat("a", 10000)), 10000), 65536); err != nil {
		t.Fatalf("after release: %v", err)
	} else {
		done()
	}
	// A body larger than the whole budget is read when nothing else is.
	if _, done, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader(strings.Repeat("a", 20000)), 20000), 65536); err != nil {
		t.Fatalf("a body over the budget, alone: %v", err)
	} else {
		done()
	}
	if n := b.inUse(); n != 0 {
		t.Fatalf("%d bytes reserved at the end", n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Without a bound every body is read, still into a buffer of its size.
func TestBodyBudgetUnbounded(t *testing.T) {
	b := newBodyBudget(0)
	var dones []func()
	for range 100 {
		body, done, err := b.read(httptest.NewRecorder(), bodyReq(strings.NewReader(strings.Repeat("a", 60000)), 60000), 65536)
		if err != nil || cap(body) != 60000 {
			t.Fatalf("%d bytes in %d: %v", len(body), cap(body), err)
		}
		dones = append(dones, done)
	}
	for _, d := range dones {
		d()
	}
	if n := b.inUse(); n != 0 {
		t.Fatalf("%d bytes reserved at the end", n)
	}
}
