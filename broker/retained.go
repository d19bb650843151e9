package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/feedmq/feedmq/channels"
)

// RetainedStore keeps the retained messages of free topics in a database
// that every node of a cluster shares (storage/postgres.DB), instead of
// each node's sessions file. Options.Retained is nil on one node on
// bbolt, and then nothing here runs.
type RetainedStore interface {
	// SetRetained stores m, or with an empty payload deletes the topic's
	// message, and returns the version of the change (0: nothing was
	// deleted). Past the bounds it refuses with channels.ErrRetainedFull.
	SetRetained(ctx context.Context, m *channels.Retained, maxMessages int, maxBytes int64) (int64, error)
	// RetainedByKey returns the message of the topic whose
	// channels.RetainedKey is key (nil: none) as of the version
	// returned; AllRetained returns every message likewise.
	RetainedByKey(ctx context.Context, key [32]byte) (*channels.Retained, int64, error)
	AllRetained(ctx context.Context) ([]channels.Retained, int64, error)
	// RetainedChanges announces every change any node commits; the
	// channel closes when the listening connection is lost.
	RetainedChanges(ctx context.Context) (<-chan channels.RetainedChange, error)
	// ExpireRetained deletes topic's message if it has expired by the
	// store's clock.
	ExpireRetained(ctx context.Context, topic string) error
}

// retainedTimeout bounds one store call made for a publish.
const retainedTimeout = 10 * time.Second

// sharedRetained keeps mochi's retained index in step with a
// RetainedStore. A retained publish is committed to the store before
// mochi acknowledges and retains it; other nodes hear of the change and
// read the message into their own index. Versions order what reaches the
// index: known holds, per topic, the version of the store's state that
// the index holds (0: unknown), and nothing older replaces it. A local
// publish that mochi retained after a newer change had been applied (the
// two race between the commit and mochi's own retain) is read again.
type sharedRetained struct {
	srv   *Server
	store RetainedStore

	// scans keeps apply's writes to mochi's retained index apart from a
	// SUBSCRIBE's read of it (scanHook): mochi v2.7.9 reads a topic
	// particle's retained path without the particle's lock
	// (TopicsIndex.scanMessages) while RetainMessage writes it under
	// that lock alone, a data race (a torn string) the race detector
	// caught between another node's retained message and a subscribe.
	scans sync.RWMutex

	mu    sync.Mutex
	known map[string]int64
	// stash carries the version of a committed publish from the hook
	// that stored it to OnRetainMessage, which mochi calls next on the
	// same goroutine.
	stash map[stashKey]int64

	// Work for the loop: topics to read again or to expire, or
	// everything (reload).
	pendMu  sync.Mutex
	pending map[string]pendingWork
	reload  bool
	kick    chan struct{}

	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	changes <-chan channels.RetainedChange
	lost    atomic.Bool // the listening connection is down (logged once)
}

type stashKey struct {
	cl    *mqtt.Client
	topic string
}

type pendingWork uint8

const (
	workRefresh pendingWork = 1 << iota
	workExpire
)

// maxPending bounds the topics waiting for the loop; past it the loop
// reloads everything instead.
const maxPending = 4096

func newSharedRetained(s *Server, store RetainedStore) *sharedRetained {
	ctx, cancel := context.WithCancel(context.Background())
	return &sharedRetained{srv: s, store: store, known: make(map[string]int64), stash: make(map[stashKey]int64),
		pending: make(map[string]pendingWork), kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// start listens for changes, then loads every retained message into
// mochi's index (a change committed meanwhile is heard and applied by
// version), and starts the loop. A store that cannot be reached fails it.
func (r *sharedRetained) start() error {
	ch, err := r.store.RetainedChanges(r.ctx)
	if err != nil {
		return fmt.Errorf("retained messages: %w", err)
	}
	if err := r.loadAll(); err != nil {
		r.cancel()
		return fmt.Errorf("retained messages: %w", err)
	}
	r.changes = ch
	r.done = make(chan struct{})
	go r.loop()
	return nil
}

func (r *sharedRetained) stop() {
	r.cancel()
	if r.done != nil {
		<-r.done
	}
}

// loop applies announced changes and the work handed to it, and after
// the listening connection is lost, listens again and reloads everything
// (changes made meanwhile were not heard).
func (r *sharedRetained) loop() {
	defer close(r.done)
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-r.ctx.Done():
			return
		case c, ok := <-r.changes:
			switch {
			case !ok:
				r.changes = nil
				r.relisten(retry)
			case c.Resync:
				r.schedule("", 0)
			default:
				r.change(c)
			}
		case <-retry.C:
			r.relisten(retry)
		case <-r.kick:
		}
		r.work()
	}
}

// relisten opens a new listening connection and reloads; it retries
// every second while the store cannot be reached.
func (r *sharedRetained) relisten(retry *time.Timer) {
	if r.lost.CompareAndSwap(false, true) {
		r.srv.log.Warn("retained messages: lost the store's change notices; reconnecting")
	}
	ch, err := r.store.RetainedChanges(r.ctx)
	if err != nil {
		if r.ctx.Err() == nil {
			retry.Reset(time.Second)
		}
		return
	}
	r.changes = ch
	r.lost.Store(false)
	r.srv.log.Info("retained messages: listening for changes again; reloading them")
	r.schedule("", 0)
}

// schedule hands the loop a topic to read again or expire, or with
// topic "" everything to reload.
func (r *sharedRetained) schedule(topic string, w pendingWork) {
	r.pendMu.Lock()
	switch {
	case topic == "":
		r.reload = true
	case len(r.pending) >= maxPending && r.pending[topic] == 0:
		r.reload = true
		clear(r.pending)
	default:
		r.pending[topic] |= w
	}
	r.pendMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// work does what was scheduled. A failed reload is tried again a second
// later; a failed read of one topic turns into a reload.
func (r *sharedRetained) work() {
	r.pendMu.Lock()
	reload, pending := r.reload, r.pending
	r.reload, r.pending = false, make(map[string]pendingWork)
	r.pendMu.Unlock()
	for topic, w := range pending {
		if w&workExpire != 0 {
			if err := r.expire(topic); err != nil && r.ctx.Err() == nil {
				r.srv.log.Warn("retained messages: expiry not recorded in the store", "topic", safeTopic(topic), "error", err.Error())
			}
		}
		if w&workRefresh != 0 && !reload {
			if err := r.refresh(topic); err != nil {
				reload = true
			}
		}
	}
	if reload {
		if err := r.loadAll(); err != nil && r.ctx.Err() == nil {
			r.srv.log.Warn("retained messages: reload failed; trying again", "error", err.Error())
			go func() {
				select {
				case <-time.After(time.Second):
					r.schedule("", 0)
				case <-r.ctx.Done():
				}
			}()
		}
	}
}

func (r *sharedRetained) expire(topic string) error {
	ctx, cancel := context.WithTimeout(r.ctx, retainedTimeout)
	defer cancel()
	return r.store.ExpireRetained(ctx, topic)
}

// change applies an announced change: the message is read unless the
// index already holds that version or a newer one.
func (r *sharedRetained) change(c channels.RetainedChange) {
	if c.Topic == "" {
		if err := r.refreshKey(c.Key); err != nil {
			r.schedule("", 0)
		}
		return
	}
	r.mu.Lock()
	held := r.known[c.Topic]
	r.mu.Unlock()
	if c.Version <= held {
		return // this node's own change, applied when it was published
	}
	if err := r.refresh(c.Topic); err != nil {
		r.schedule("", 0)
	}
}

// refresh reads topic's message from the store and applies it.
func (r *sharedRetained) refresh(topic string) error {
	ctx, cancel := context.WithTimeout(r.ctx, retainedTimeout)
	defer cancel()
	m, asOf, err := r.store.RetainedByKey(ctx, channels.RetainedKey(topic))
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(topic, m, asOf)
	return nil
}

// refreshKey applies a change announced by key (its topic was too long
// for the notice): the message read names its topic; a deleted one is
// looked for among the topics the index holds.
func (r *sharedRetained) refreshKey(key [32]byte) error {
	ctx, cancel := context.WithTimeout(r.ctx, retainedTimeout)
	defer cancel()
	m, asOf, err := r.store.RetainedByKey(ctx, key)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m != nil {
		r.apply(m.Topic, m, asOf)
		return nil
	}
	for topic := range r.srv.mochi.Topics.Retained.GetAll() {
		if channels.RetainedKey(topic) == key {
			r.apply(topic, nil, asOf)
		}
	}
	return nil
}

// loadAll reads every retained message and makes the index hold exactly
// them, except for topics it already holds newer states of.
func (r *sharedRetained) loadAll() error {
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	all, asOf, err := r.store.AllRetained(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	in := make(map[string]bool, len(all))
	for i := range all {
		in[all[i].Topic] = true
		r.apply(all[i].Topic, &all[i], asOf)
	}
	for topic := range r.srv.mochi.Topics.Retained.GetAll() {
		if !in[topic] {
			r.apply(topic, nil, asOf)
		}
	}
	// Versions of topics retained nowhere only matter for the moment a
	// change races with a publish; a reload forgets them.
	for topic := range r.known {
		if !in[topic] {
			delete(r.known, topic)
		}
	}
	return nil
}

// apply puts topic's state as of version asOf into mochi's index, unless
// the index holds a newer one; mu is held.
func (r *sharedRetained) apply(topic string, m *channels.Retained, asOf int64) {
	if asOf <= r.known[topic] && r.known[topic] != 0 {
		return
	}
	s := r.srv
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic}
	if m != nil {
		pk = retainedPacket(m)
	}
	r.scans.Lock()
	s.mochi.Topics.RetainMessage(pk)
	r.scans.Unlock()
	if m == nil {
		s.retained.set(topic, 0)
	} else {
		s.retained.set(topic, len(m.Payload))
	}
	atomic.StoreInt64(&s.mochi.Info.Retained, int64(s.mochi.Topics.Retained.Len()))
	r.known[topic] = asOf
	// Versions of deleted topics are kept for the moment a change races
	// with a publish; they are dropped when they pile up.
	if len(r.known) > 2*s.opts.RetainedMax+1024 {
		for t := range r.known {
			if _, ok := s.mochi.Topics.Retained.Get(t); !ok {
				delete(r.known, t)
			}
		}
	}
}

// retainedPacket is the PUBLISH mochi keeps for m. Its message expiry
// interval is what is left of it, as MQTT wants it forwarded.
func retainedPacket(m *channels.Retained) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: m.QoS},
		TopicName:   m.Topic, Payload: m.Payload, ProtocolVersion: m.ProtocolVersion,
		Created: m.Created.Unix(),
		Properties: packets.Properties{PayloadFormat: m.PayloadFormat, PayloadFormatFlag: m.PayloadFormatFlag,
			ContentType: m.ContentType, ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData},
	}
	for _, u := range m.User {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Val})
	}
	if !m.Expires.IsZero() {
		pk.Expiry = m.Expires.Unix()
		pk.Properties.MessageExpiryInterval = uint32(max(1, time.Until(m.Expires)/time.Second))
	}
	return pk
}

// commit stores a retained publish of cl (an empty payload deletes)
// before mochi acknowledges and retains it. Past the bounds it is
// delivered but not retained (retain false); a store failure refuses the
// publish (err), so nothing claims it was kept.
func (r *sharedRetained) commit(cl *mqtt.Client, m *channels.Retained) (retain bool, err error) {
	s := r.srv
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closing.Load() {
		return false, &rejection{reasonShutdown, packets.ErrServerShuttingDown, errShutdown}
	}
	ctx, cancel := context.WithTimeout(r.ctx, retainedTimeout)
	defer cancel()
	v, err := r.store.SetRetained(ctx, m, s.opts.RetainedMax, s.opts.RetainedMaxBytes)
	switch {
	case errors.Is(err, channels.ErrRetainedFull) || channels.ErrorCode(err) == channels.EINVALID:
		s.retained.refuse(s, cl, m.Topic, len(m.Payload))
		return false, nil
	case err != nil:
		return false, storeRejection(err)
	}
	if v > 0 {
		r.mu.Lock()
		r.stash[stashKey{cl, m.Topic}] = v
		r.mu.Unlock()
	}
	return true, nil
}

// retained follows mochi retaining a publish of cl: the index now holds
// the version commit stored, unless a newer change was applied meanwhile
// (then the topic is read again). Without a version (a will published
// late by the inline client, or a delete of nothing) it is read again.
func (r *sharedRetained) retained(cl *mqtt.Client, topic string) {
	r.mu.Lock()
	k := stashKey{cl, topic}
	v, ok := r.stash[k]
	delete(r.stash, k)
	stale := !ok || r.known[topic] > v
	if stale {
		r.known[topic] = 0
	} else {
		r.known[topic] = v
	}
	r.mu.Unlock()
	if stale {
		r.schedule(topic, workRefresh)
	}
}

// forget drops a version commit stored for a publish mochi did not retain.
func (r *sharedRetained) forget(cl *mqtt.Client, topic string) {
	r.mu.Lock()
	delete(r.stash, stashKey{cl, topic})
	r.mu.Unlock()
}

// retainedFromPublish is what the store keeps of a retained publish.
func retainedFromPublish(cl *mqtt.Client, pk *packets.Packet) *channels.Retained {
	m := &channels.Retained{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		PayloadFormat:   pk.Properties.PayloadFormat, PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
		ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
		CorrelationData: pk.Properties.CorrelationData}
	if cl.Properties.ProtocolVersion >= 5 {
		m.MessageExpiry = pk.Properties.MessageExpiryInterval
	}
	for _, u := range pk.Properties.User {
		m.User = append(m.User, channels.UserProperty{Key: u.Key, Val: u.Val})
	}
	return m
}

// retainedFromWill is what the store keeps of a retained will.
func retainedFromWill(cl *mqtt.Client, will *mqtt.Will) *channels.Retained {
	m := &channels.Retained{Topic: will.TopicName, Payload: will.Payload, QoS: will.Qos,
		ProtocolVersion: cl.Properties.ProtocolVersion}
	for _, u := range will.User {
		m.User = append(m.User, channels.UserProperty{Key: u.Key, Val: u.Val})
	}
	return m
}

// scanHook holds sharedRetained.scans for reading while mochi processes
// a client's SUBSCRIBE, which ends by reading the retained index. mochi
// calls OnSubscribe only for a SUBSCRIBE that passed validation, and then
// always reaches OnPacketProcessed; its inline client's subscriptions
// (OnSubscribe without a packet) are left out.
type scanHook struct {
	mqtt.HookBase
	r *sharedRetained
}

func (h *scanHook) ID() string { return "feedmq-retained-scans" }

func (h *scanHook) Provides(b byte) bool {
	return b == mqtt.OnSubscribe || b == mqtt.OnPacketProcessed
}

func (h *scanHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		h.r.scans.RLock()
	}
	return pk
}

func (h *scanHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Subscribe && !cl.Net.Inline {
		h.r.scans.RUnlock()
	}
}
