package channels

import (
	"context"
	"time"
)

// Binding turns publishes on free topics into feed entries of a channel:
// every publish on a topic matching Topic (an MQTT filter of free topics)
// becomes an entry whose values are extracted from the payload by the
// paths given (a JSONPath subset: $, $.a.b, $.a[0]; "$" alone is the
// whole payload as a plain number or string).
type Binding struct {
	ID        uint64
	ChannelID uint64
	Topic     string            // MQTT filter, free topics only
	Fields    [NumFields]string // path per field1..field8; "" not bound
	Status    string            // path or ""
	Latitude  string
	Longitude string
	Elevation string
	CreatedAt string    // path of the entry's timestamp; "" for the time received
	Created   time.Time // when the binding was made
}

// BindingStore keeps bindings. Implemented by storage.DB.
type BindingStore interface {
	// Bindings returns every binding, in ID order.
	Bindings(ctx context.Context) ([]Binding, error)
	// CreateBinding assigns b.ID and stores b; ENOTFOUND when its
	// channel does not exist.
	CreateBinding(ctx context.Context, b *Binding) error
	// DeleteBinding removes a binding; ENOTFOUND when there is none.
	DeleteBinding(ctx context.Context, id uint64) error
}

// Extract builds the entry that payload, published on a bound topic,
// stands for, at now. An error says what could not be extracted; no
// partial entry is ever returned.
func (b *Binding) Extract(payload []byte, now time.Time) (*Entry, error) {
	return nil, Errorf(EINVALID, "bindings are not implemented yet")
}
