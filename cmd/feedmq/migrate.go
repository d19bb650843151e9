package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
)

const (
	// migratePage is the most entries ThingSpeak's read API returns at once.
	migratePage = 8000
	// maxPageBytes bounds one page's response: 8000 entries of twelve
	// 255-character values fit with room to spare.
	maxPageBytes = 128 << 20
	// migrateRetries is how often a rate-limited or failing page is asked
	// for again before the migration gives up.
	migrateRetries = 5
	// maxRetryWait caps the wait a Retry-After header may ask for.
	maxRetryWait = 2 * time.Minute
)

// migrateRetryWait is the wait before asking again for a page refused
// with 429 or 5xx without a Retry-After. (A variable for tests.)
var migrateRetryWait = 15 * time.Second

type migrateOptions struct {
	from     string
	channel  string
	apiKey   string
	to       string
	timeout  time.Duration
	maxPages int
	json     bool
}

func newFeedMigrateCommand() *cobra.Command {
	var o migrateOptions
	cmd := &cobra.Command{
		Use:   "migrate --from URL --channel ID [--api-key READKEY] --to CHANNEL_ID",
		Short: "Copy a whole channel from ThingSpeak (or another feedmq) into a channel",
		Long: `Copy every entry of a channel on ThingSpeak, or on another feedmq, into a
channel here. The source is read through its read API, newest entries first,
8000 at a time (GET URL/channels/ID/feeds.json?results=8000&end=...), into a
temporary file; then the entries are imported oldest first, as
feedmq feed import does: each keeps its created_at, and into a channel that
has never had entries each keeps its entry_id too. A private source channel
needs its read API key (--api-key). Rate limits (HTTP 429) and server errors
are waited out a few times before the migration gives up; nothing is stored
unless the whole channel was read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := o.source()
			if err != nil {
				return err
			}
			to, err := parseID("channel", o.to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				sum, err := migrate(ctx, a, src, to, cmd.ErrOrStderr())
				if err != nil {
					return withHint(err, channelListHint)
				}
				return printImport(cmd.OutOrStdout(), o.json, sum, "Migrated")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "base URL of the source, e.g. https://api.thingspeak.com")
	f.StringVar(&o.channel, "channel", "", "channel ID at the source")
	f.StringVar(&o.apiKey, "api-key", "", "read API key of a private source channel")
	f.StringVar(&o.to, "to", "", "channel ID here to import into")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "time limit of each page request")
	f.IntVar(&o.maxPages, "max-pages", 10000, "give up after this many pages of 8000 entries")
	f.BoolVar(&o.json, "json", false, "print JSON instead of a sentence")
	for _, name := range []string{"from", "channel", "to"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// migrateSource is a channel on a ThingSpeak-compatible server.
type migrateSource struct {
	base     *url.URL
	channel  uint64
	apiKey   string
	client   *http.Client
	maxPages int
}

func (o *migrateOptions) source() (*migrateSource, error) {
	u, err := url.Parse(o.from)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid --from %q: give the server's base URL, such as https://api.thingspeak.com", oneLine(o.from))
	}
	if u.User != nil {
		return nil, errors.New("invalid --from: put no user name or password in the URL; a private channel needs --api-key")
	}
	id, err := channels.ParseID(o.channel)
	if err != nil {
		return nil, fmt.Errorf("invalid --channel %q: the source channel's ID, a whole number from 1", oneLine(o.channel))
	}
	if o.timeout <= 0 {
		return nil, errors.New("invalid --timeout: give a positive duration such as 1m")
	}
	if o.maxPages < 1 {
		return nil, errors.New("invalid --max-pages: give a number from 1")
	}
	if strings.ContainsAny(o.apiKey, "&#/? \t\r\n") {
		return nil, errors.New("invalid --api-key: a read API key holds letters and digits only")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return &migrateSource{base: u, channel: id, apiKey: o.apiKey, maxPages: o.maxPages,
		client: &http.Client{Timeout: o.timeout}}, nil
}

// migrateFarEnd is the end of the first page: the last second a
// "YYYY-MM-DD" date can write.
var migrateFarEnd = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// feedsURL is the page URL; with the key unless redacted (for messages).
func (s *migrateSource) feedsURL(end time.Time, withKey bool) string {
	u := *s.base
	u.Path += "/channels/" + strconv.FormatUint(s.channel, 10) + "/feeds.json"
	q := url.Values{}
	q.Set("results", strconv.Itoa(migratePage))
	q.Set("status", "true")
	q.Set("location", "true")
	q.Set("timezone", "UTC")
	// ThingSpeak's window starts in 2010 unless told otherwise.
	q.Set("start", "1970-01-01 00:00:00")
	if end.IsZero() {
		// Reads end at the source's clock unless told otherwise (on
		// ThingSpeak as on feedmq): entries dated ahead need an end.
		end = migrateFarEnd
	}
	q.Set("end", end.UTC().Format("2006-01-02 15:04:05"))
	if withKey && s.apiKey != "" {
		q.Set("api_key", s.apiKey)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// page fetches the newest entries created at or before end (any, when
// zero), retrying rate limits and server errors.
func (s *migrateSource) page(ctx context.Context, end time.Time) ([]channels.Entry, error) {
	shown := s.feedsURL(end, false)
	for try := 1; ; try++ {
		es, wait, err := s.get(ctx, end)
		if err == nil {
			return es, nil
		}
		if wait == 0 || try > migrateRetries {
			return nil, fmt.Errorf("GET %s: %w", shown, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// get makes one request. A non-zero wait means the error may pass.
func (s *migrateSource) get(ctx context.Context, end time.Time) ([]channels.Entry, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.feedsURL(end, true), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the URL, and with it the key
		}
		if ue != nil && ue.Timeout() {
			return nil, 0, fmt.Errorf("no answer within the --timeout: %w", err)
		}
		return nil, 0, err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxPageBytes+1)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(body, 512))
		return nil, retryWait(resp), statusError(resp.StatusCode, s.channel, b)
	}
	var page struct {
		Feeds []map[string]json.RawMessage `json:"feeds"`
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, 0, err
	}
	if len(b) > maxPageBytes {
		return nil, 0, fmt.Errorf("the page is larger than %d bytes", maxPageBytes)
	}
	if strings.TrimSpace(string(b)) == "-1" {
		return nil, 0, statusError(http.StatusBadRequest, s.channel, b)
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, 0, fmt.Errorf("the answer is not a ThingSpeak feed: %v", err)
	}
	es := make([]channels.Entry, 0, len(page.Feeds))
	for i, f := range page.Feeds {
		e, err := decodeFeedEntry(f)
		if err != nil {
			return nil, 0, fmt.Errorf("feed entry %d of the page: %w", i+1, err)
		}
		es = append(es, e)
	}
	return es, 0, nil
}

// decodeFeedEntry reads one entry of a feeds.json page. Values may be
// strings, numbers or null; null and "" leave the value unset.
func decodeFeedEntry(f map[string]json.RawMessage) (channels.Entry, error) {
	var e channels.Entry
	var at string
	if err := json.Unmarshal(f["created_at"], &at); err != nil {
		return e, errors.New("it has no created_at string")
	}
	t, err := channels.ParseImportTime(at)
	if err != nil {
		return e, err
	}
	e.CreatedAt = t
	if err := json.Unmarshal(f["entry_id"], &e.ID); err != nil || e.ID == 0 {
		return e, errors.New("it has no entry_id from 1")
	}
	for i := 0; i < channels.NumValues; i++ {
		raw, ok := f[channels.ValueName(i)]
		if !ok || string(raw) == "null" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			var n json.Number
			if json.Unmarshal(raw, &n) != nil {
				return e, fmt.Errorf("entry %d: %s is neither text nor a number", e.ID, channels.ValueName(i))
			}
			v = n.String()
		}
		if i >= channels.Latitude && i <= channels.Elevation {
			v = strings.TrimSpace(v)
		}
		if v != "" {
			e.SetValue(i, v)
		}
	}
	return e, nil
}

// retryWait is how long to wait before asking again after resp, or 0 when
// asking again will not help.
func retryWait(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
		return 0
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		return min(time.Duration(s)*time.Second, maxRetryWait)
	}
	return migrateRetryWait
}

// statusError explains a refused page; body is the start of the answer.
func statusError(code int, channel uint64, body []byte) error {
	text := strings.TrimSpace(string(body))
	switch {
	case text == "-1" || code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("HTTP %d: the source refuses to show channel %d: it is private and needs its read API key (--api-key), or the key is wrong", code, channel)
	case code == http.StatusNotFound:
		return fmt.Errorf("HTTP 404: the source has no channel %d (is --from the API's base URL, such as https://api.thingspeak.com?)", channel)
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("HTTP 429: the source keeps refusing requests as too many; try again later")
	}
	if len(text) > 200 {
		text = text[:200]
	}
	return fmt.Errorf("HTTP %d: %q", code, text)
}

// spool keeps the pages on disk, newest page first, so that a channel of
// millions of entries is never in memory; the import reads them back from
// the last page (the oldest entries).
type spool struct {
	f     *os.File
	w     *bufio.Writer
	off   int64
	pages []spoolPage
	used  uint16 // values any entry sets
	n     int
}

type spoolPage struct {
	off, size int64
	n         int
}

type spoolEntry struct {
	ID  uint64                     `json:"i"`
	At  int64                      `json:"t"`
	Set uint16                     `json:"s"`
	V   [channels.NumValues]string `json:"v"`
}

func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "feedmq-migrate-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for the migration: %w", err)
	}
	_ = os.Remove(f.Name()) // unlinked at once (on Unix): nothing left behind
	return &spool{f: f, w: bufio.NewWriter(f)}, nil
}

func (s *spool) close() { s.f.Close() }

func (s *spool) add(es []channels.Entry) error {
	cw := &countWriter{w: s.w}
	enc := json.NewEncoder(cw)
	for i := range es {
		e := &es[i]
		s.used |= e.Set
		if err := enc.Encode(spoolEntry{ID: e.ID, At: e.CreatedAt.Unix(), Set: e.Set, V: e.Values}); err != nil {
			return fmt.Errorf("temporary file for the migration: %w", err)
		}
	}
	s.pages = append(s.pages, spoolPage{off: s.off, size: cw.n, n: len(es)})
	s.off += cw.n
	s.n += len(es)
	return nil
}

// each calls f with every entry, oldest page first.
func (s *spool) each(f func(e channels.Entry) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("temporary file for the migration: %w", err)
	}
	for p := len(s.pages) - 1; p >= 0; p-- {
		pg := s.pages[p]
		dec := json.NewDecoder(bufio.NewReader(io.NewSectionReader(s.f, pg.off, pg.size)))
		for range pg.n {
			var se spoolEntry
			if err := dec.Decode(&se); err != nil {
				return fmt.Errorf("temporary file for the migration: %w", err)
			}
			e := channels.Entry{ID: se.ID, CreatedAt: time.Unix(se.At, 0).UTC(), Set: se.Set, Values: se.V}
			if err := f(e); err != nil {
				return err
			}
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// migrate reads the whole source channel, newest page first, then imports
// it oldest first. Progress goes to log.
func migrate(ctx context.Context, a admin.Service, src *migrateSource, to uint64, log io.Writer) (*importSummary, error) {
	target, err := a.Channel(ctx, to)
	if err != nil {
		return nil, err
	}
	sp, err := newSpool()
	if err != nil {
		return nil, err
	}
	defer sp.close()
	var end time.Time
	seen := map[uint64]bool{} // IDs read that were created at end
	for {
		if len(sp.pages) >= src.maxPages {
			return nil, fmt.Errorf("the source channel has more than %d pages of %d entries; raise --max-pages", src.maxPages, migratePage)
		}
		es, err := src.page(ctx, end)
		if err != nil {
			return nil, fmt.Errorf("%w; nothing was stored", err)
		}
		// Pages overlap by the second at end: the next page is asked
		// for up to and including it, so entries of that second that
		// the page before had no room for are not skipped.
		fresh := es[:0]
		for _, e := range es {
			if end.IsZero() || e.CreatedAt.Before(end) || (e.CreatedAt.Equal(end) && !seen[e.ID]) {
				fresh = append(fresh, e)
			}
		}
		if len(fresh) == 0 {
			if len(es) >= migratePage {
				return nil, fmt.Errorf("more than %d entries of the source share created_at %s, so its read API cannot page past them; nothing was stored",
					migratePage, formatTime(end))
			}
			break
		}
		slices.SortStableFunc(fresh, func(x, y channels.Entry) int { return x.CreatedAt.Compare(y.CreatedAt) })
		if err := sp.add(fresh); err != nil {
			return nil, err
		}
		oldest := fresh[0].CreatedAt
		if !oldest.Equal(end) {
			clear(seen)
		}
		for _, e := range fresh {
			if e.CreatedAt.Equal(oldest) {
				seen[e.ID] = true
			}
		}
		end = oldest
		fmt.Fprintf(log, "read page %d: %d entries, back to %s\n", len(sp.pages), len(fresh), formatTime(oldest))
	}
	for n := 1; n <= channels.NumFields; n++ {
		if sp.used&(1<<(n-1)) != 0 && !target.FieldEnabled(n) {
			return nil, fmt.Errorf("the source uses field%d, which channel %d has not enabled; enable it (feedmq channel update %d --field %d=LABEL) and run the migration again; nothing was stored",
				n, to, to, n)
		}
	}
	im, err := admin.NewImporter(ctx, a, to, true)
	if err != nil {
		return nil, err
	}
	err = sp.each(func(e channels.Entry) error {
		return im.Add(ctx, e, fmt.Sprintf("source entry %d", e.ID), 0)
	})
	if err == nil {
		err = im.Flush(ctx)
	}
	if err != nil {
		return nil, err
	}
	sum := summaryOf(im.Summary())
	sum.Pages = len(sp.pages)
	return sum, nil
}
