package cluster

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/feedmq/feedmq/channels"
)

// Free-topic messages (plain MQTT outside the reserved trees) cross nodes
// live and AT MOST ONCE: core NATS keeps nothing, so a message sent while
// a node is cut off from NATS, or dropped because that node fell behind,
// never reaches that node's subscribers. Nothing fills it in: unlike
// entries, free messages have no log. Retained messages are the
// exception that the database covers (each node reads them from there).

// AttachFree starts receiving the other nodes' free-topic messages:
// deliver gets each, valid and at most maxPacket bytes of MQTT (the
// receiving broker's packet limit), on one goroutine in the order NATS
// brought them. Malformed ones are dropped and counted. Call it once,
// after Attach.
func (c *Cluster) AttachFree(deliver func(*channels.Message), maxPacket int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed.Load():
		return errors.New("cluster: closed")
	case c.freeSub != nil:
		return errors.New("cluster: free messages already attached")
	}
	limit := maxPacket + freeOverhead
	sub, err := c.nc.Subscribe(freeSubject(c.cfg.Name), func(msg *nats.Msg) {
		if c.closed.Load() || c.foreign(msg) {
			return
		}
		m, origin, err := DecodeFree(msg.Data, limit)
		if err == nil && origin == c.cfg.Node {
			// NoEcho keeps a node's own messages from it; one claiming
			// this node's name comes from a misconfigured twin, and
			// delivering it could loop.
			err = errors.New("free message: origin is this node")
		}
		if err != nil {
			c.m.freeDropped.Add(1)
			c.log.Warn("cluster: malformed free message dropped", "bytes", len(msg.Data), "error", cutErr(err))
			return
		}
		c.m.freeReceived.Add(1)
		deliver(&m)
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	// A burst beyond these is dropped by the client library (counted by
	// NATS as a slow consumer): at most once.
	_ = sub.SetPendingLimits(1<<16, 64<<20)
	if err := c.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	c.freeSub = sub
	return nil
}

// ForwardFree sends a free-topic message this node's broker accepted and
// routed to the other nodes. It does not wait for NATS; a send NATS
// refuses (disconnected with a full buffer, over its max_payload) is
// counted and lost.
func (c *Cluster) ForwardFree(m *channels.Message) {
	if c.closed.Load() {
		return
	}
	b := AppendFree(make([]byte, 0, FreeSize(m, c.cfg.Node)), m, c.cfg.Node)
	if err := c.nc.PublishMsg(c.message(freeSubject(c.cfg.Name), b)); err != nil {
		c.m.freeErrors.Add(1)
		return
	}
	c.m.freeForwarded.Add(1)
}
