package channels

import (
	"context"
	"time"
)

// Store keeps channels and their feeds. storage.DB implements it on bbolt.
// Methods return *Error values with code ENOTFOUND for a missing channel or
// entry; anything else is an internal error.
type Store interface {
	// CreateChannel checks c (Channel.Validate, EINVALID), assigns c.ID
	// (1, 2, ...), sets CreatedAt and UpdatedAt to now and stores c.
	CreateChannel(ctx context.Context, c *Channel) error
	// UpdateChannel checks c (EINVALID) and replaces the settings of
	// channel c.ID, setting UpdatedAt to now and keeping CreatedAt. It
	// never changes the feed or LastEntryID. ENOTFOUND.
	UpdateChannel(ctx context.Context, c *Channel) error
	// DeleteChannel removes the channel, its feed and every device's grant
	// to it, in one transaction. ENOTFOUND.
	DeleteChannel(ctx context.Context, id uint64) error
	// ClearChannel deletes every entry; numbering restarts at 1. ENOTFOUND.
	ClearChannel(ctx context.Context, id uint64) error
	// FindChannel returns the channel with LastEntryID filled in. ENOTFOUND.
	FindChannel(ctx context.Context, id uint64) (*Channel, error)
	// ListChannels returns all channels ordered by ID.
	ListChannels(ctx context.Context) ([]*Channel, error)

	// AppendEntry assigns e.ID (the channel's last entry_id + 1) and stores
	// e durably: when it returns nil the entry has been committed (fsynced,
	// or acknowledged by the database). Concurrent calls may share one
	// commit. Every implementation keeps these promises:
	//   - IDs are gapless and increasing per channel across every process
	//     sharing the store: an entry gets an ID only in the commit that
	//     stores it, and no two entries of a channel get the same one.
	//   - A returned entry is visible to every reader of the store (Entries,
	//     FindEntry, from any process) from the moment AppendEntry returns.
	// Its errors:
	//   - ENOTFOUND (ErrChannelNotFound) when the channel does not exist;
	//   - ERATELIMIT (ErrRateLimited) when the store itself enforces the
	//     channel's rate limit and the entry comes too soon: nothing is
	//     stored, and callers answer as they answer their own rate checks;
	//   - ErrCommitUnknown in the chain when the store lost its connection
	//     while committing: the entry may or may not be stored, so callers
	//     must not retry blindly (a retry may store it twice) and must not
	//     claim it is stored;
	//   - anything else: nothing was stored.
	AppendEntry(ctx context.Context, e *Entry) error
	// Entries returns the entries of a channel that match f, oldest first.
	// ENOTFOUND for a missing channel.
	Entries(ctx context.Context, channelID uint64, f EntryFilter) ([]Entry, error)
	// FindEntry returns one entry by its entry_id. ENOTFOUND.
	FindEntry(ctx context.Context, channelID, entryID uint64) (*Entry, error)
}

// AsyncAppender is implemented by stores that can queue an append without
// making the caller wait for its commit. then runs after the commit (or
// its failure), in queue order, and must not block: it may run on the
// goroutine of another caller's append that led the commit, or on this
// caller's own goroutine before AppendEntryAsync returns (so the caller
// must hold nothing then needs), and must not append itself. The entry
// and the error then gets keep AppendEntry's promises.
type AsyncAppender interface {
	AppendEntryAsync(ctx context.Context, e *Entry, then func(*Entry, error)) error
}

// CallerIdle marks ctx for AppendEntryAsync: its caller has nothing else
// to do until more input comes (a connection reader that has just read
// its socket empty). A store whose writer is idle may then commit the
// entry on the caller's goroutine instead of waking another one for it;
// a caller with more to read is not held up by a commit.
func CallerIdle(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerIdleKey{}, true)
}

// IsCallerIdle reports whether ctx was marked by CallerIdle.
func IsCallerIdle(ctx context.Context) bool {
	v, _ := ctx.Value(callerIdleKey{}).(bool)
	return v
}

type callerIdleKey struct{}

// OrderedAppender is implemented by stores that can append like
// AppendEntry and also call then with the entry and the same outcome, in
// commit order with AsyncAppender's answers, on the goroutine that ran
// the commit, before AppendEntryThen returns. A caller that hands the
// entry on after AppendEntry returns can be passed by an entry committed
// after it; one that hands it on in then cannot. then is not called when
// the entry is refused before it is queued; it must not block and must
// not append.
type OrderedAppender interface {
	AppendEntryThen(ctx context.Context, e *Entry, then func(*Entry, error)) error
}

// BatchAppender is implemented by stores that can append several entries
// of one channel atomically: AppendEntries numbers them consecutively in
// the order given and stores all or none. A zero CreatedAt becomes the
// current time. ENOTFOUND when the channel does not exist, EINVALID for a
// batch over MaxBatch entries or over several channels; otherwise it keeps
// AppendEntry's promises, for the batch as a whole (a rate refusal counts
// the batch as one write).
type BatchAppender interface {
	AppendEntries(ctx context.Context, es []*Entry) error
}

// OrderedBatchAppender is implemented by stores that can append a batch
// like AppendEntries and also call then with the same outcome, in commit
// order with AsyncAppender's and OrderedAppender's answers, on the
// goroutine that ran the commit, before AppendEntriesThen returns, as
// OrderedAppender does for one entry. then is not called when the batch
// is refused before it is queued; it must not block and must not append.
type OrderedBatchAppender interface {
	AppendEntriesThen(ctx context.Context, es []*Entry, then func(error)) error
}

// EntrySpan is the span of entry IDs a filter selects in one feed, read
// at one moment, so that a large read can be handed out a page at a time.
// Version names the feed it was read from: clearing the feed or deleting
// its channel changes it, and a page asked for under an older version is
// refused (ECONFLICT) rather than filled from the new feed, whose IDs
// start again at 1.
type EntrySpan struct {
	First, Last uint64 // 0, 0 when the filter selects nothing
	Version     uint64
}

// EntryKey places an entry in a feed's time order: by created_at (Unix
// seconds, as stored), then by entry_id among entries of one second.
// Entry IDs follow arrival, and created_at may be set by the writer, so
// the two orders differ once an entry is written back-dated.
type EntryKey struct {
	Created int64
	ID      uint64
}

// Less reports whether k comes before o in time order.
func (k EntryKey) Less(o EntryKey) bool {
	return k.Created < o.Created || (k.Created == o.Created && k.ID < o.ID)
}

// EntryKeys are the keys of the entries a read selects, oldest first,
// read at one moment. Version names the feed as EntrySpan's does.
type EntryKeys struct {
	Keys    []EntryKey
	Version uint64
}

// EntryFilter selects entries of one channel.
type EntryFilter struct {
	// Limit keeps only the newest Limit matching entries; 0 means all.
	Limit int
	// Start and End bound CreatedAt, inclusive; zero values are open.
	Start, End time.Time
	// Field, when 1..8, keeps only entries that set that field.
	Field int
	// AfterID, when not 0, keeps only entries with an ID above it. With
	// Limit it still returns the newest Limit of them; without Limit it
	// returns every later entry, oldest first, which is how a reader that
	// saw entry n catches up (a gap in a live stream, a replay).
	AfterID uint64
}

// EntryCounter is implemented by stores that can count a feed's entries
// without reading them. The count differs from the last entry_id once
// retention has dropped old entries or an import kept another server's
// IDs with gaps.
type EntryCounter interface {
	// EntryCount returns the number of entries channelID holds.
	// ENOTFOUND for a missing channel.
	EntryCount(ctx context.Context, channelID uint64) (uint64, error)
}
