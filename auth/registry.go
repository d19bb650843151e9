package auth

import (
	"fmt"
	"sync"

	"github.com/feedmq/feedmq/channels"
)

// Anonymous is the device ID of a connection without a username.
const Anonymous uint64 = 0

// Registry answers per-packet questions from memory. It holds immutable
// snapshots of channels and devices; the admin service replaces them
// after every committed change, so a lookup never touches the store.
type Registry struct {
	mu       sync.RWMutex
	channels map[uint64]*channels.Channel
	devices  map[uint64]*principal
	byUser   map[string]*principal
	// byWriteKey finds the channel of a write key for HTTP /update, which
	// names no channel.
	byWriteKey map[string]uint64
	byClient   map[string]*principal // by client ID: whose session an ID is
	anonRules  []Rule                // access rules of anonymous connections (rules.go)
	// commonRules apply to every connection, anonymous or not, as
	// Mosquitto's pattern lines do (rules.go).
	commonRules []Rule
}

// principal is a device with its grants indexed for O(1) checks.
type principal struct {
	dev    *Device
	grants map[uint64]Grant
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		channels:   make(map[uint64]*channels.Channel),
		devices:    make(map[uint64]*principal),
		byUser:     make(map[string]*principal),
		byWriteKey: make(map[string]uint64),
		byClient:   make(map[string]*principal),
	}
}

// PutChannel adds or replaces a channel. The registry keeps its own copy.
func (r *Registry) PutChannel(c *channels.Channel) {
	cp := *c
	r.mu.Lock()
	if old, ok := r.channels[c.ID]; ok && old.WriteKey != c.WriteKey && r.byWriteKey[old.WriteKey] == c.ID {
		delete(r.byWriteKey, old.WriteKey)
	}
	r.channels[c.ID] = &cp
	r.byWriteKey[c.WriteKey] = c.ID
	r.mu.Unlock()
}

// DeleteChannel forgets a channel and every grant to it.
func (r *Registry) DeleteChannel(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.channels[id]; ok && r.byWriteKey[c.WriteKey] == id {
		delete(r.byWriteKey, c.WriteKey)
	}
	delete(r.channels, id)
	for _, p := range r.devices {
		if _, ok := p.grants[id]; ok {
			r.putDeviceLocked(withoutGrant(p.dev, id))
		}
	}
}

// PutDevice adds or replaces a device. The registry keeps its own copy.
func (r *Registry) PutDevice(d *Device) {
	r.mu.Lock()
	r.putDeviceLocked(d)
	r.mu.Unlock()
}

func (r *Registry) putDeviceLocked(d *Device) {
	cp := *d
	cp.Channels = append([]Grant(nil), d.Channels...)
	cp.Rules = append([]Rule(nil), d.Rules...)
	p := &principal{dev: &cp, grants: make(map[uint64]Grant, len(cp.Channels))}
	for _, g := range cp.Channels {
		p.grants[g.ChannelID] = g
	}
	// Free the old username unless another device has taken it since.
	if old, ok := r.devices[d.ID]; ok && old.dev.Username != d.Username && r.byUser[old.dev.Username] == old {
		delete(r.byUser, old.dev.Username)
	}
	if old, ok := r.devices[d.ID]; ok && old.dev.ClientID != d.ClientID && r.byClient[old.dev.ClientID] == old {
		delete(r.byClient, old.dev.ClientID)
	}
	r.devices[d.ID] = p
	r.byUser[cp.Username] = p
	r.byClient[cp.ClientID] = p
}

// DeleteDevice forgets a device.
func (r *Registry) DeleteDevice(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.devices[id]; ok {
		if r.byUser[p.dev.Username] == p { // not taken by another device since
			delete(r.byUser, p.dev.Username)
		}
		if r.byClient[p.dev.ClientID] == p {
			delete(r.byClient, p.dev.ClientID)
		}
		delete(r.devices, id)
	}
}

// Channel returns the registry's snapshot of a channel. Callers must not
// modify it.
func (r *Registry) Channel(id uint64) (*channels.Channel, bool) {
	r.mu.RLock()
	c, ok := r.channels[id]
	r.mu.RUnlock()
	return c, ok
}

// ChannelByWriteKey returns the channel whose write key is key, from
// memory only: a wrong key costs no store access.
func (r *Registry) ChannelByWriteKey(key string) (*channels.Channel, bool) {
	if key == "" {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.byWriteKey[key]
	if !ok {
		return nil, false
	}
	c, ok := r.channels[id]
	if !ok || !keysEqual(key, c.WriteKey) {
		return nil, false
	}
	return c, true
}

// Authenticate checks a device's credentials and returns its ID. It
// returns ErrBadCredentials for an unknown username or a wrong password,
// and ErrClientID when the password is right but the client ID is not the
// device's.
func (r *Registry) Authenticate(clientID, username, password string) (uint64, error) {
	r.mu.RLock()
	p, ok := r.byUser[username]
	r.mu.RUnlock()
	if !ok {
		// Hash anyway so that an unknown username costs the same time as
		// a wrong password.
		VerifyPassword(hashPrefix, password)
		return 0, ErrBadCredentials
	}
	if !VerifyPassword(p.dev.PasswordHash, password) {
		return 0, ErrBadCredentials
	}
	if clientID != p.dev.ClientID {
		return 0, fmt.Errorf("device %d (%s): %w", p.dev.ID, p.dev.Name, ErrClientID)
	}
	return p.dev.ID, nil
}

// ClientIDOwner returns the device whose client ID is clientID. Such an
// ID names that device's session: only a CONNECT authenticated as the
// device may use it.
func (r *Registry) ClientIDOwner(clientID string) (uint64, bool) {
	r.mu.RLock()
	p, ok := r.byClient[clientID]
	r.mu.RUnlock()
	if !ok {
		return 0, false
	}
	return p.dev.ID, true
}

// HasUsername reports whether username is a device's. Logs show only
// such usernames: another may be a password typed in the wrong field.
func (r *Registry) HasUsername(username string) bool {
	r.mu.RLock()
	_, ok := r.byUser[username]
	r.mu.RUnlock()
	return ok
}

// HasDevice reports whether device id exists.
func (r *Registry) HasDevice(id uint64) bool {
	r.mu.RLock()
	_, ok := r.devices[id]
	r.mu.RUnlock()
	return ok
}

// CheckPassword reports whether password is still device id's password.
// The broker uses it to find connections to close after a reset.
func (r *Registry) CheckPassword(id uint64, password string) bool {
	r.mu.RLock()
	p, ok := r.devices[id]
	r.mu.RUnlock()
	return ok && VerifyPassword(p.dev.PasswordHash, password)
}

// CanPublish returns nil when device may write to channel ch: it holds a
// publish grant, or key is the channel's write key. device is Anonymous
// for connections without a username.
func (r *Registry) CanPublish(device, ch uint64, key string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.channels[ch]
	if !ok {
		return fmt.Errorf("channel %d: %w", ch, ErrUnknownChannel)
	}
	if key != "" && keysEqual(key, c.WriteKey) {
		return nil
	}
	if p, ok := r.devices[device]; ok && p.grants[ch].Publish {
		return nil
	}
	return r.denied(device, "publish to", ch, key)
}

// CanSubscribe returns nil when device may read channel ch: it holds a
// subscribe grant, the channel is public, or key is the read key.
func (r *Registry) CanSubscribe(device, ch uint64, key string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.channels[ch]; !ok {
		return fmt.Errorf("channel %d: %w", ch, ErrUnknownChannel)
	}
	if r.mayRead(device, ch, key) {
		return nil
	}
	return r.denied(device, "subscribe to", ch, key)
}

// MayRead reports what CanSubscribe does, without building an error: it
// runs for every delivery to every subscriber.
func (r *Registry) MayRead(device, ch uint64, key string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.mayRead(device, ch, key)
}

// mayRead is the read rule; the caller holds r.mu.
func (r *Registry) mayRead(device, ch uint64, key string) bool {
	c, ok := r.channels[ch]
	if !ok {
		return false
	}
	if c.Public || (key != "" && keysEqual(key, c.ReadKey)) {
		return true
	}
	p, ok := r.devices[device]
	return ok && p.grants[ch].Subscribe
}

// denied builds the error for a refused action; the caller holds r.mu.
func (r *Registry) denied(device uint64, what string, ch uint64, key string) error {
	who := "anonymous connection"
	if p, ok := r.devices[device]; ok {
		who = fmt.Sprintf("device %d (%s)", device, p.dev.Name)
	} else if device != Anonymous {
		who = fmt.Sprintf("deleted device %d", device)
	}
	if key != "" {
		return fmt.Errorf("%s may not %s channel %d (wrong API key in topic): %w", who, what, ch, ErrNotAuthorized)
	}
	return fmt.Errorf("%s may not %s channel %d: %w", who, what, ch, ErrNotAuthorized)
}

// withoutGrant returns a copy of d without its grant to channel id.
func withoutGrant(d *Device, id uint64) *Device {
	cp := *d
	cp.Channels = nil
	for _, g := range d.Channels {
		if g.ChannelID != id {
			cp.Channels = append(cp.Channels, g)
		}
	}
	return &cp
}

// ChannelByName returns the channel whose name is exactly name. It returns
// ErrUnknownChannel when there is none, and an ECONFLICT error when several
// channels share the name (address it by ID then). A name that looks like
// a channel ID (channels.LooksLikeID) names no channel, even if an older
// database holds one by that name: such a level is always an ID.
func (r *Registry) ChannelByName(name string) (*channels.Channel, error) {
	if channels.LooksLikeID(name) {
		return nil, fmt.Errorf("channel %q: %w", name, ErrUnknownChannel)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var found *channels.Channel
	for _, c := range r.channels {
		if c.Name != name {
			continue
		}
		if found != nil {
			return nil, channels.Errorf(channels.ECONFLICT, "several channels are named %q; use the channel ID", name)
		}
		found = c
	}
	if found == nil {
		return nil, fmt.Errorf("channel %q: %w", name, ErrUnknownChannel)
	}
	return found, nil
}
