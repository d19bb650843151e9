package broker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/feedmq/feedmq/channels"
)

// sessionStore is mochi's bbolt storage hook, narrowed to what feedmq
// keeps across restarts: retained messages of free topics (unless a
// shared store keeps them: Options.Retained), and the
// persistent sessions of devices and anonymous clients (free-topic
// subscriptions and queued QoS 1/2 messages). mochi's hook as it is
// would also write every clean client on connect (a file sync each), store refused filters (SUBACK
// 0x80) as granted subscriptions, keep the subscriptions and messages of
// expired clients for ever, and restore them for clients that no longer
// exist; and nothing of the reserved trees may be stored at all (filters
// can carry read keys). The wrapper decides what reaches the file, and
// filters and cleans what comes back from it.
type sessionStore struct {
	*bolt.Hook
	srv *Server

	mu     sync.Mutex
	stored map[string]bool // client IDs with a client record in the file
}

func (st *sessionStore) ID() string { return "feedmq-sessions" }

func (st *sessionStore) Provides(b byte) bool { return sessionStoreEvents.has(b) }

var sessionStoreEvents = newHookSet(
	mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
	mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
	mqtt.OnClientExpired, mqtt.OnRetainedExpired,
	mqtt.StoredClients, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages, mqtt.StoredSubscriptions,
)

func (st *sessionStore) isStored(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.stored[id]
}

func (st *sessionStore) setStored(id string, on bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if on {
		st.stored[id] = true
	} else {
		delete(st.stored, id)
	}
}

// keeps reports whether cl's session belongs in the file: a persistent
// session of a device or an anonymous client.
func (st *sessionStore) keeps(cl *mqtt.Client) bool {
	if !persistent(cl) || cl.Net.Inline {
		return false
	}
	_, _, ok := st.srv.sessionOwner(cl.ID, string(cl.Properties.Username))
	return ok
}

// OnSessionEstablished stores a persistent session's client, and removes
// the stored one of a client that now connects with a clean session.
func (st *sessionStore) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	switch {
	case st.keeps(cl):
		st.Hook.OnSessionEstablished(cl, pk)
		st.setStored(cl.ID, true)
	case st.isStored(cl.ID):
		st.forgetClient(cl)
	}
}

func (st *sessionStore) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if st.isStored(cl.ID) {
		st.Hook.OnWillSent(cl, pk)
	}
}

// OnDisconnect forgets the stored client, with its subscriptions and
// messages, when its session ends with the connection (an MQTT 5 client
// may set its expiry to 0 at DISCONNECT).
func (st *sessionStore) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if expire && !cl.IsTakenOver() {
		st.forgetClient(cl)
	}
}

// OnSubscribed stores the granted free-topic filters of a stored session.
func (st *sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !st.isStored(cl.ID) {
		return
	}
	kept := pk
	kept.Filters = nil
	var keptCodes []byte
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && !channels.Reserved(f.Filter) {
			kept.Filters = append(kept.Filters, f)
			keptCodes = append(keptCodes, codes[i])
		}
	}
	if len(kept.Filters) > 0 {
		st.Hook.OnSubscribed(cl, kept, keptCodes)
	}
}

func (st *sessionStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if st.isStored(cl.ID) {
		st.Hook.OnUnsubscribed(cl, pk)
	}
}

// OnRetainMessage stores retained messages of free topics; an empty
// payload removes one (mochi's hook would store an empty message when
// there was nothing to remove).
func (st *sessionStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if channels.Reserved(pk.TopicName) || st.srv.shared != nil {
		return
	}
	if len(pk.Payload) == 0 {
		r = -1
	}
	st.Hook.OnRetainMessage(cl, pk, r)
}

func (st *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if st.isStored(cl.ID) && !channels.Reserved(pk.TopicName) {
		st.Hook.OnQosPublish(cl, pk, sent, resends)
	}
}

func (st *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if st.isStored(cl.ID) {
		st.Hook.OnQosComplete(cl, pk)
	}
}

func (st *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if st.isStored(cl.ID) {
		st.Hook.OnQosComplete(cl, pk)
	}
}

// OnClientExpired removes an expired client's record; feedmq's hook,
// which runs first, has unsubscribed it and cleared its messages.
func (st *sessionStore) OnClientExpired(cl *mqtt.Client) {
	if st.isStored(cl.ID) {
		st.Hook.OnClientExpired(cl)
		st.setStored(cl.ID, false)
	}
}

// forgetClient removes a client and everything stored with it.
func (st *sessionStore) forgetClient(cl *mqtt.Client) {
	if !st.isStored(cl.ID) {
		return
	}
	var filters []packets.Subscription
	for _, sub := range cl.State.Subscriptions.GetAll() {
		filters = append(filters, sub)
	}
	if len(filters) > 0 {
		st.Hook.OnUnsubscribed(cl, packets.Packet{Filters: filters})
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		st.Hook.OnQosComplete(cl, pk)
	}
	st.Hook.OnClientExpired(cl)
	st.setStored(cl.ID, false)
}

// StoredClients restores the persistent sessions of clients that still
// belong to someone (their device, or anonymous clients while those are
// allowed); the records of others are deleted.
func (st *sessionStore) StoredClients() ([]storage.Client, error) {
	all, err := st.Hook.StoredClients()
	if err != nil {
		return nil, err
	}
	var kept []storage.Client
	for _, c := range all {
		_, _, owned := st.srv.sessionOwner(c.ID, string(c.Username))
		live := c.ProtocolVersion >= 5 && c.Properties.SessionExpiryInterval > 0 || c.ProtocolVersion < 5 && !c.Clean
		if owned && live {
			c.Properties.TopicAliasMaximum = 0 // whole topics only: see OnConnect
			kept = append(kept, c)
			st.setStored(c.ID, true)
			continue
		}
		st.Hook.OnClientExpired(&mqtt.Client{ID: c.ID})
	}
	return kept, nil
}

// StoredSubscriptions restores the free-topic filters of restored
// sessions; any other stored filter is deleted.
func (st *sessionStore) StoredSubscriptions() ([]storage.Subscription, error) {
	all, err := st.Hook.StoredSubscriptions()
	if err != nil {
		return nil, err
	}
	var kept []storage.Subscription
	for _, sub := range all {
		if st.isStored(sub.Client) && !channels.Reserved(sub.Filter) && sub.Qos <= 2 {
			kept = append(kept, sub)
			continue
		}
		st.Hook.OnUnsubscribed(&mqtt.Client{ID: sub.Client},
			packets.Packet{Filters: []packets.Subscription{{Filter: sub.Filter}}})
	}
	return kept, nil
}

// StoredInflightMessages restores the queued messages of restored
// sessions; others are deleted.
func (st *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	all, err := st.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	var kept []storage.Message
	for _, m := range all {
		// mochi's hook does not store the packet ID, only puts it in the
		// key: without it every restored message of a client would take
		// ID 0, and all but one would be lost.
		if i := strings.LastIndexByte(m.ID, ':'); i >= 0 {
			id, err := strconv.ParseUint(m.ID[i+1:], 10, 16)
			if err == nil {
				m.PacketID = uint16(id)
			}
		}
		if st.isStored(m.Client) && !channels.Reserved(m.TopicName) && m.PacketID != 0 {
			kept = append(kept, m)
			continue
		}
		st.Hook.OnQosComplete(&mqtt.Client{ID: m.Client}, m.ToPacket())
	}
	return kept, nil
}

// StoredRetainedMessages restores retained messages of free topics, and
// counts them against the retained bounds.
func (st *sessionStore) StoredRetainedMessages() ([]storage.Message, error) {
	if st.srv.shared != nil {
		return nil, nil // the shared store's, loaded by Open, count instead
	}
	all, err := st.Hook.StoredRetainedMessages()
	if err != nil {
		return nil, err
	}
	var kept []storage.Message
	for _, m := range all {
		if channels.Reserved(m.TopicName) || len(m.Payload) == 0 {
			st.Hook.OnRetainedExpired(m.TopicName)
			continue
		}
		kept = append(kept, m)
		st.srv.retained.set(m.TopicName, len(m.Payload))
	}
	return kept, nil
}

// checkSessionsFile reads the whole sessions file before mochi opens it:
// bbolt panics on a damaged page when it first reads it (at open for the
// free list, later for a bucket), which would take the process down with
// a stack trace. A damaged file gets an error that says what to do; it
// is not removed, since what it holds is the user's.
func checkSessionsFile(path string) (err error) {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // none yet (bbolt makes it), or one bbolt can start afresh
	}
	damaged := func(cause any) error {
		return fmt.Errorf("sessions file %s is damaged (%v): move it aside to start without the retained "+
			"messages and persistent sessions it holds (channels and entries are in another file)", path, cause)
	}
	defer func() {
		if r := recover(); r != nil {
			err = damaged(r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("sessions file %s is in use by another process (another feedmq serve?)", path)
	case errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) ||
		errors.Is(err, bolterrors.ErrVersionMismatch):
		return damaged(err)
	case err != nil:
		return fmt.Errorf("sessions file %s: %w", path, err) // permissions, say
	}
	defer db.Close()
	var first error
	err = db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() { // read to the end: the check runs in a goroutine of its own
			if first == nil {
				first = e
			}
		}
		return first
	})
	if err != nil {
		return damaged(err)
	}
	return nil
}
