package broker

// Bindings turn publishes on free topics into feed entries. The admin
// service owns them; it hands the broker the whole list after every change
// (SetBindings, wired to admin.Local.WatchBindings), and the broker
// swaps in a new index, so the publish path reads it without a lock.
//
// Who may publish to a bound topic is decided by the access rules of free
// topics alone, checked before bindPublish is called: a binding is the
// channel owner's word that what lands on the topic feeds the channel, so
// the publisher needs no grant on the channel.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// Reasons a bound publish did not become an entry, as counted
// (feedmq_binding_failures_total) and logged.
const (
	bindNoValues       = "no_values"       // none of the bound paths in the payload
	bindBadPayload     = "bad_payload"     // not parseable, or a bound value is not valid
	bindTooLarge       = "too_large"       // over channels.MaxBindingPayload
	bindUnknownChannel = "unknown_channel" // deleted meanwhile
	bindRateLimited    = "rate_limited"    // the channel's rate limit
	bindStore          = "store_error"     // the commit failed
	bindShutdown       = "shutting_down"
)

var bindReasons = [...]string{bindNoValues, bindBadPayload, bindTooLarge, bindUnknownChannel, bindRateLimited, bindStore, bindShutdown}

// bindState is the broker's side of bindings. The zero value is ready:
// no bindings.
type bindState struct {
	idx      atomic.Pointer[bindIndex]
	entries  atomic.Uint64
	failures [len(bindReasons)]atomic.Uint64
}

// bindIndex finds the bindings of a topic: filters without wildcards by
// exact topic, the others by trying each.
type bindIndex struct {
	exact map[string][]*bound
	wild  []*bound
	n     int
}

// bound is one binding ready to extract, with its failure log's state.
type bound struct {
	b channels.Binding
	x *channels.Extractor

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
}

// BindingStats counts what bindings did since the server started.
type BindingStats struct {
	Bindings int               // bindings in force
	Entries  uint64            // entries stored from bound publishes
	Failures map[string]uint64 // bound publishes that stored nothing, by reason
}

// BindingStats returns the binding counters.
func (s *Server) BindingStats() BindingStats {
	st := BindingStats{Entries: s.binds.entries.Load(), Failures: make(map[string]uint64, len(bindReasons))}
	if ix := s.binds.idx.Load(); ix != nil {
		st.Bindings = ix.n
	}
	for i, r := range bindReasons {
		st.Failures[r] = s.binds.failures[i].Load()
	}
	return st
}

// SetBindings replaces every binding in force: from the next publish on,
// bs is what matches. A binding that does not compile (the admin service
// refuses such, so only a damaged database holds one) is logged and left
// out.
func (s *Server) SetBindings(bs []channels.Binding) {
	ix := &bindIndex{exact: make(map[string][]*bound)}
	for _, b := range bs {
		x, err := b.Compile()
		if err == nil {
			err = channels.ValidBindingTopic(b.Topic)
		}
		if err != nil {
			s.log.Error("binding left out: it is not valid", "binding", b.ID, "channel", b.ChannelID, "error", err.Error())
			continue
		}
		bd := &bound{b: b, x: x}
		if strings.ContainsAny(b.Topic, "+#") {
			ix.wild = append(ix.wild, bd)
		} else {
			ix.exact[b.Topic] = append(ix.exact[b.Topic], bd)
		}
		ix.n++
	}
	s.binds.idx.Store(ix)
}

// bindPublish turns a publish on a free topic, already accepted and
// allowed for its publisher, into feed entries of the channels bound to
// the topic, through the same commit path as channels/<id>/publish.
// Called by the free-topic publish path after the publish is accepted.
// It returns once every entry is committed (or refused): a bound QoS 1
// publish is acknowledged after its entries are stored. A failure stores
// nothing for that binding, is counted and logged, and never affects the
// publish itself, which was a valid MQTT message.
func (s *Server) bindPublish(device uint64, clientID, topic string, payload []byte) {
	ix := s.binds.idx.Load()
	if ix == nil || ix.n == 0 {
		return
	}
	for _, bd := range ix.exact[topic] {
		s.bindOne(bd, device, clientID, topic, payload)
	}
	for _, bd := range ix.wild {
		if filterMatches(bd.b.Topic, topic) {
			s.bindOne(bd, device, clientID, topic, payload)
		}
	}
}

// bindOne stores the entry one binding extracts from payload.
func (s *Server) bindOne(bd *bound, device uint64, clientID, topic string, payload []byte) {
	ch, ok := s.registry.Channel(bd.b.ChannelID)
	if !ok {
		s.bindFailed(bd, bindUnknownChannel, errors.New("the bound channel does not exist"), device, clientID, topic, payload)
		return
	}
	e, dropped, err := bd.x.Extract(ch, payload, s.opts.Limits, time.Now())
	if err != nil {
		reason := bindBadPayload
		switch {
		case errors.Is(err, channels.ErrTooLarge):
			reason = bindTooLarge
		case errors.Is(err, channels.ErrNoValues):
			reason = bindNoValues
		}
		s.bindFailed(bd, reason, err, device, clientID, topic, payload)
		return
	}
	s.fieldsDropped(ch.ID, dropped)
	if err := s.commit(context.Background(), &e); err != nil {
		reason := bindStore
		var rj *rejection
		if errors.As(err, &rj) {
			switch rj.reason {
			case reasonRateLimited:
				reason = bindRateLimited
			case reasonShutdown:
				reason = bindShutdown
			case reasonUnknownChannel:
				reason = bindUnknownChannel
			}
		}
		s.bindFailed(bd, reason, err, device, clientID, topic, payload)
		return
	}
	s.binds.entries.Add(1)
}

// bindLogEvery bounds the failure lines of one binding: a device that
// publishes what its binding cannot read would otherwise log every time.
const bindLogEvery = 10 * time.Second

// bindLogPrefix is how much of a payload a failure line shows: enough to
// see its shape, never the whole of it.
const bindLogPrefix = 48

// bindFailed counts a failure and logs it, at most every bindLogEvery
// per binding.
func (s *Server) bindFailed(bd *bound, reason string, err error, device uint64, clientID, topic string, payload []byte) {
	for i, r := range bindReasons {
		if r == reason {
			s.binds.failures[i].Add(1)
		}
	}
	now := time.Now()
	bd.logMu.Lock()
	if !bd.lastLog.IsZero() && now.Sub(bd.lastLog) < bindLogEvery {
		bd.suppressed++
		bd.logMu.Unlock()
		return
	}
	suppressed := bd.suppressed
	bd.lastLog, bd.suppressed = now, 0
	bd.logMu.Unlock()
	s.log.Warn("binding: publish not stored as an entry", "binding", bd.b.ID, "channel", bd.b.ChannelID,
		"client", clientID, "device", device, "topic", safeTopic(topic), "bytes", len(payload),
		"reason", reason, "error", channels.ErrorMessage(err), "payload_prefix", payloadPrefix(payload),
		"suppressed_since_last", suppressed)
}

// payloadPrefix quotes the first bindLogPrefix bytes of a payload.
func payloadPrefix(p []byte) string {
	if len(p) <= bindLogPrefix {
		return strconv.Quote(string(p))
	}
	return strconv.Quote(string(p[:bindLogPrefix])) + "..."
}

// filterMatches reports whether the MQTT topic filter f matches topic:
// + stands for one level, # for any number of levels (none included) at
// the end. Bindings see free topics only, so the rule that wildcards do
// not match $ topics needs no check here.
func filterMatches(f, topic string) bool {
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a": the filter may end in one more #.
			return frest == "#"
		case !fmore:
			return false
		}
		f, topic = frest, trest
	}
}
