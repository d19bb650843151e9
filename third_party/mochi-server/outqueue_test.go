// feedmq fork: tests of the outbound queue and its writer started on
// demand (outQueue in clients.go).

package mqtt

import (
	"bufio"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

func queuedPublish(i int) *packets.Packet {
	return &packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   "a/b",
		Payload:     []byte(strconv.Itoa(i)),
	}
}

// readPublishes reads n publishes from r with a client of its own and
// sends their payloads to out.
func readPublishes(t *testing.T, rcl *Client, n int, out chan<- string) {
	for j := 0; j < n; j++ {
		fh := new(packets.FixedHeader)
		if err := rcl.ReadFixedHeader(fh); err != nil {
			t.Error(err)
			close(out)
			return
		}
		pk, err := rcl.ReadPacket(fh)
		if err != nil {
			t.Error(err)
			close(out)
			return
		}
		out <- string(pk.Payload)
	}
	close(out)
}

func writerRunning(cl *Client) bool {
	q := &cl.State.outbound
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.writing
}

// Packets queued in bursts, with the writer ending between them and
// starting again, from several goroutines at once, all arrive once and,
// per goroutine, in the order queued; afterwards no writer runs and the
// queue holds no memory. Run under -race, this also checks the hand-over
// between a finishing writer and enqueue.
func TestOutboundWriterStartsAndEnds(t *testing.T) {
	cl, r, _ := newTestClient()
	defer cl.Stop(errClientStop)
	rcl, _, _ := newTestClient()
	rcl.Net.bconn = bufio.NewReader(r)

	const senders, bursts, burst = 4, 50, 3
	got := make(chan string, 16)
	go readPublishes(t, rcl, senders*bursts*burst, got)

	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for b := 0; b < bursts; b++ {
				for i := 0; i < burst; i++ {
					n := s*1_000_000 + b*burst + i
					for !cl.enqueue(queuedPublish(n), 3) {
						runtime.Gosched() // full: the writer is behind
					}
				}
				if b%5 == 0 {
					time.Sleep(time.Millisecond) // let the writer end
				}
			}
		}(s)
	}
	last := make(map[int]int)
	count := 0
	for p := range got {
		n, err := strconv.Atoi(p)
		require.NoError(t, err)
		s, seq := n/1_000_000, n%1_000_000
		if prev, ok := last[s]; ok {
			require.Greater(t, seq, prev, "sender %d out of order", s)
		}
		last[s] = seq
		count++
	}
	wg.Wait()
	require.Equal(t, senders*bursts*burst, count)

	deadline := time.Now().Add(5 * time.Second)
	for writerRunning(cl) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.False(t, writerRunning(cl), "writer still running with nothing queued")
	require.Nil(t, cl.State.outbound.pks, "drained queue still holds its slice")
	require.Equal(t, 0, cl.OutboundLen())
	require.Equal(t, int32(0), cl.State.outboundQty)
}

// The bound is mochi's channel capacity: with the writer stuck on a
// packet, MaximumClientWritesPending more wait and the next is refused;
// publishToClient counts it dropped. Once the client stops, the writer
// ends without writing the rest.
func TestOutboundQueueBound(t *testing.T) {
	s := newServer()
	cl, _, _ := newTestClient() // nobody reads the pipe: the first write blocks
	s.Clients.Add(cl)
	max := int(cl.ops.options.Capabilities.MaximumClientWritesPending)

	require.True(t, cl.enqueue(queuedPublish(0), int32(max)))
	deadline := time.Now().Add(5 * time.Second)
	for cl.OutboundLen() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the writer takes it and blocks
	}
	for i := 0; i < max; i++ {
		require.True(t, cl.enqueue(queuedPublish(i+1), int32(max)), "packet %d", i+1)
	}
	require.Equal(t, max, cl.OutboundLen())

	dropped := s.Info.MessagesDropped
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b"}, *queuedPublish(99))
	require.ErrorIs(t, err, packets.ErrPendingClientWritesExceeded)
	require.Equal(t, dropped+1, s.Info.MessagesDropped)
	require.Equal(t, max, cl.OutboundLen())

	cl.Stop(errClientStop) // closes the pipe: the blocked write fails
	for writerRunning(cl) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.False(t, writerRunning(cl), "writer still running after Stop")
	require.Equal(t, 0, cl.OutboundLen())
}

// An idle client has no writer goroutine: it starts with the first
// queued packet and ends when the queue is empty.
func TestOutboundNoIdleWriter(t *testing.T) {
	cl, r, _ := newTestClient() // newTestClient's WriteLoop finds nothing and ends
	defer cl.Stop(errClientStop)
	deadline := time.Now().Add(5 * time.Second)
	for writerRunning(cl) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.False(t, writerRunning(cl))

	rcl, _, _ := newTestClient()
	rcl.Net.bconn = bufio.NewReader(r)
	got := make(chan string, 1)
	go readPublishes(t, rcl, 1, got)
	require.True(t, cl.enqueue(queuedPublish(7), 3))
	require.Equal(t, "7", <-got)
	for writerRunning(cl) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.False(t, writerRunning(cl), "writer still running after the queue drained")
}

// byteConn is a net.Conn that buffers its own reads.
type byteConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *byteConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *byteConn) ReadByte() (byte, error)    { return c.r.ReadByte() }

// A connection that is an io.ByteReader is read directly, with no
// bufio.Reader of mochi's held for its life; any other gets one.
func TestNewClientReadsByteReaderDirectly(t *testing.T) {
	r, w := net.Pipe()
	defer r.Close()
	defer w.Close()
	bc := &byteConn{Conn: r, r: bufio.NewReaderSize(r, 16)}
	cl := newClient(bc, &ops{info: new(system.Info), hooks: new(Hooks), log: logger,
		options: &Options{ClientNetReadBufferSize: 1024, Capabilities: NewDefaultServerCapabilities()}})
	require.Equal(t, packetReader(bc), cl.Net.bconn)

	plain := newClient(w, &ops{info: new(system.Info), hooks: new(Hooks), log: logger,
		options: &Options{ClientNetReadBufferSize: 1024, Capabilities: NewDefaultServerCapabilities()}})
	_, ok := plain.Net.bconn.(*bufio.Reader)
	require.True(t, ok)

	go func() { _, _ = w.Write([]byte{0xc0, 0}) }() // PINGREQ
	fh := new(packets.FixedHeader)
	require.NoError(t, cl.ReadFixedHeader(fh))
	require.Equal(t, packets.Pingreq, fh.Type)
}

// A client whose writer never finds its queue empty (a subscriber that
// keeps up, but only just) must not keep every packet slot it ever
// used: the queue's memory is bounded by the packets waiting, not by
// the packets queued since it was last empty.
func TestOutboundQueueBacklogBounded(t *testing.T) {
	cl, r, _ := newTestClient()
	defer cl.Stop(errClientStop)
	rcl, _, _ := newTestClient()
	rcl.Net.bconn = bufio.NewReader(r)
	read := func() string {
		t.Helper()
		fh := new(packets.FixedHeader)
		require.NoError(t, rcl.ReadFixedHeader(fh))
		pk, err := rcl.ReadPacket(fh)
		require.NoError(t, err)
		return string(pk.Payload)
	}

	const waiting, total = 3, 20000
	// One packet in the writer's (blocked) write and a few behind it;
	// then one more queued before each one read: the queue is never
	// empty, so the writer never ends and never resets it.
	next := 0
	for ; next <= waiting; next++ {
		require.True(t, cl.enqueue(queuedPublish(next), 16))
	}
	maxCap := 0
	for i := 0; i < total; i++ {
		require.True(t, cl.enqueue(queuedPublish(next), 16))
		next++
		require.Equal(t, strconv.Itoa(i), read())
		q := &cl.State.outbound
		q.mu.Lock()
		maxCap = max(maxCap, cap(q.pks))
		q.mu.Unlock()
	}
	require.LessOrEqual(t, maxCap, 64, "queue grew to %d slots with at most %d packets waiting", maxCap, waiting+2)
	for i := total; i < next; i++ {
		require.Equal(t, strconv.Itoa(i), read())
	}
}
