package httpd_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/storetest"
)

// Writes through the real broker to a store that fails as a database
// shared by several servers can. Its own rate refusal is answered as the
// broker's: 0 with 200 for a single write (ThingSpeak's answer), 429 for
// a bulk write. A commit whose outcome is unknown is a 5xx that says the
// write may be stored, with 0 as the body of /update; never a success.
func TestWriteStoreOutcomes(t *testing.T) {
	store := new(storetest.Failing)
	e := newBulkEnvOver(t, func(db testStore) channels.Store {
		store.Store = db
		return store
	})
	ch := e.channel(0)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	update := func(format, v string) (int, string) {
		t.Helper()
		return get(fmt.Sprintf("/update%s?api_key=%s&field1=%s", format, url.QueryEscape(ch.WriteKey), v))
	}
	bulk := func() (int, string) {
		t.Helper()
		return e.postJSON(ch.ID, `{"write_api_key":"`+ch.WriteKey+`","updates":[{"delta_t":0,"field1":"1"},{"delta_t":5,"field1":"2"}]}`)
	}
	unknown := fmt.Errorf("commit: %w", channels.ErrCommitUnknown)

	store.Fail(channels.RateLimited(ch.ID, 15*time.Second, 9*time.Second))
	for _, format := range []string{"", ".json"} {
		if code, body := update(format, "r"); code != http.StatusOK || body != "0" {
			t.Fatalf("rate refusal of /update%s: %d %q, want 200 0", format, code, body)
		}
	}
	if code, body := bulk(); code != http.StatusTooManyRequests || !strings.Contains(body, "retry in 9s") {
		t.Fatalf("rate refusal of a bulk write: %d %s", code, body)
	}

	for _, stored := range []bool{false, true} {
		if stored {
			store.FailAfterStoring(unknown)
		} else {
			store.Fail(unknown)
		}
		if code, body := update("", "u"); code != http.StatusInternalServerError || body != "0" {
			t.Fatalf("commit unknown (stored %v), /update: %d %q, want 500 0", stored, code, body)
		}
		for _, format := range []string{".json", ".xml"} {
			code, body := update(format, "u")
			if code != http.StatusInternalServerError || !strings.Contains(body, "error_commit_unknown") ||
				!strings.Contains(body, "may or may not have been stored") {
				t.Fatalf("commit unknown (stored %v), /update%s: %d %s", stored, format, code, body)
			}
		}
		if code, body := bulk(); code != http.StatusInternalServerError || !strings.Contains(body, "error_commit_unknown") {
			t.Fatalf("commit unknown (stored %v), bulk write: %d %s", stored, code, body)
		}
	}
	// Only the appends of unknown outcome that were in fact stored are
	// in the feed: three single writes and a batch of two.
	if n := len(e.entries(ch.ID)); n != 5 {
		t.Fatalf("%d entries stored, want 5", n)
	}
	if n := store.Refused(); n != 3+8 {
		t.Fatalf("the store refused %d appends, want 11", n)
	}
	store.Fail(nil)
	if code, body := update("", "ok"); code != http.StatusOK || body != "6" {
		t.Fatalf("after recovery: %d %q, want 200 6", code, body)
	}
	if logs := e.logs.String(); strings.Contains(logs, ch.WriteKey) {
		t.Fatalf("a write key is in the log:\n%s", logs)
	}
}
