package channels

import "unsafe"

// Chunks holds the bytes of parsed values: a parse takes a part of a
// shared chunk, writes its values there once and never again, and the
// entry's strings point into it. Many entries' values then cost one
// allocation instead of one each. The collector frees a chunk when no
// string into it is left, so an entry kept for long keeps its whole chunk
// in memory: at most chunkSize bytes per such entry. A Chunks is not safe
// for concurrent use (keep one per goroutine, or in a sync.Pool); the
// strings it hands out are, as any string.
type Chunks struct {
	buf []byte // the current chunk: buf[:len(buf)] is taken
	// held is how much of the chunk the last take set aside, until keep.
	held int
}

const (
	// chunkSize is the size of a chunk, and so what one long-lived
	// entry can keep in memory beyond its own values.
	chunkSize = 8 << 10
	// maxChunked is the largest part taken from a chunk: a larger
	// payload is rare and gets an allocation of its own, so it does not
	// use up chunks.
	maxChunked = 1 << 10
)

// take returns an empty slice with room for n bytes that no one else
// writes to. Appending past n moves to an allocation of its own. A nil
// c allocates.
func (c *Chunks) take(n int) []byte {
	if c == nil || n > maxChunked {
		return make([]byte, 0, n)
	}
	if cap(c.buf)-len(c.buf) < n {
		c.buf = make([]byte, 0, chunkSize)
	}
	start := len(c.buf)
	c.held = n
	return c.buf[start : start : start+n]
}

// keep marks the first n bytes of the last take as used for good (they
// back strings now); the rest of it goes to the next take.
func (c *Chunks) keep(n int) {
	if c == nil || c.held == 0 {
		return
	}
	c.buf = c.buf[:len(c.buf)+min(n, c.held)]
	c.held = 0
}

// text returns a string of the bytes b[from:], which must not change
// after: they back the string.
func text(b []byte, from int) string {
	if from == len(b) {
		return ""
	}
	return unsafe.String(&b[from], len(b)-from)
}
