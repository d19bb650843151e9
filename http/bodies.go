package httpd

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A request body is read whole before it is parsed, and a client may send
// it as slowly as the read timeout allows: without a bound, many clients
// without any key could each make the server hold a buffer near the body
// limit. bodyBudget bounds the body bytes being read or parsed at once,
// server-wide (the API's writes and management requests and the
// console's forms share it); a request that finds it spent is answered
// 503 before its body is read.
type bodyBudget struct {
	mu   sync.Mutex
	max  int64 // 0: no limit
	used int64
}

func newBodyBudget(max int64) *bodyBudget { return &bodyBudget{max: max} }

// take reserves n bytes, or reports false when they are not free. With
// nothing reserved it grants any n, so that a budget smaller than one
// route's limit slows that route down rather than closing it.
func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.used > 0 && b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// inUse returns the bytes reserved now.
func (b *bodyBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// bodyChunk is the first buffer of a body of unknown length (chunked);
// the buffer then doubles up to the route's limit, each step reserved.
const bodyChunk = 4 << 10

// Errors of bodyBudget.read.
var (
	errBodyTooLarge = errors.New("request body over the limit")
	errBodyBusy     = errors.New("request body budget spent")
	errBodyRead     = errors.New("request body could not be read")
)

// errBodiesBusy answers a request whose body finds the budget spent.
var errBodiesBusy = &apiError{http.StatusServiceUnavailable, "error_busy", "Service Unavailable",
	"The server is reading as many request bodies as it allows; try again in a moment."}

// refusedBodyGrace is how long the client of a too-large body may go on
// sending it, so that it reads the 413.
const refusedBodyGrace = time.Second

// refusedBusy is the Refusals reason of a refused body outside the API
// (the API's is its error code's, also "busy").
const refusedBusy = "busy"

// read reads r's body, at most limit bytes, into a buffer no larger than
// the declared Content-Length (or, for a body of unknown length, twice
// what arrived), with the buffer's size reserved while it is read. Call
// done once the body is parsed; on error the reservation is already
// returned. Errors: errBodyTooLarge (a declared length over limit is
// refused unread), errBodyBusy (with Retry-After set), errBodyRead (the
// client left, timed out or sent a malformed chunk). Both refusals close
// the connection without reading the rest of the body.
func (b *bodyBudget) read(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, done func(), err error) {
	var held int64
	done = func() {
		b.give(held)
		held = 0
	}
	refuse := func(e error) ([]byte, func(), error) {
		done()
		w.Header().Set("Connection", "close")
		// After the answer net/http reads what is left of the body (up
		// to 256 KiB) before closing, waiting on a stalled client until
		// the read timeout. When the budget is spent (a flood of slow
		// bodies) a deadline now ends that at once. A body that is only
		// too large gets a moment to finish arriving, because closing
		// with the client's bytes unread makes the kernel reset the
		// connection, and a client still sending would see the reset
		// instead of the 413. (Not supported only where there is no
		// connection, as in tests.)
		deadline := time.Now()
		if e == errBodyTooLarge {
			deadline = deadline.Add(refusedBodyGrace)
		}
		_ = http.NewResponseController(w).SetReadDeadline(deadline)
		if e == errBodyBusy {
			w.Header().Set("Retry-After", "1")
		}
		return nil, func() {}, e
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, done, nil
	}
	if r.ContentLength > limit {
		return refuse(errBodyTooLarge)
	}
	var buf []byte
	next := int64(bodyChunk) // the size of the buffer's next step
	if r.ContentLength > 0 {
		// Reserved before anything is read, so that a refused client
		// (Expect: 100-continue) is not even asked for its body.
		if !b.take(r.ContentLength) {
			return refuse(errBodyBusy)
		}
		held = r.ContentLength
		buf = make([]byte, 0, held)
	}
	for {
		if len(buf) == cap(buf) {
			// Full: only grow for a body that goes on.
			var one [1]byte
			n, err := io.ReadFull(r.Body, one[:])
			if err == io.EOF {
				return buf, done, nil
			} else if err != nil || n != 1 {
				done()
				return nil, func() {}, errBodyRead
			}
			if int64(len(buf)) >= limit {
				return refuse(errBodyTooLarge)
			}
			size := min(max(next, int64(len(buf)+1)), limit)
			if !b.take(size - held) {
				return refuse(errBodyBusy)
			}
			held = size
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = append(grown, one[0])
			next = 2 * size
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, done, nil
		} else if err != nil {
			done()
			return nil, func() {}, errBodyRead
		}
	}
}

// bodyError is the API's answer to an error of bodyBudget.read on a
// route whose bodies may be at most limit bytes.
func bodyError(err error, limit int) *apiError {
	switch err {
	case errBodyTooLarge:
		return errTooLarge("The request body is over " + strconv.Itoa(limit) + " bytes.")
	case errBodyBusy:
		return errBodiesBusy
	}
	return badRequest("The request body could not be read.")
}
