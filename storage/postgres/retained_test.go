package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/internal/pgtest"
)

func retainedState(t *testing.T, db *DB) (messages, bytes, version int64) {
	t.Helper()
	err := db.pool.QueryRow(context.Background(), "SELECT messages, bytes, version FROM retained_state").
		Scan(&messages, &bytes, &version)
	if err != nil {
		t.Fatal(err)
	}
	return
}

func mustRetain(t *testing.T, db *DB, m *channels.Retained) int64 {
	t.Helper()
	v, err := db.SetRetained(context.Background(), m, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A retained message comes back with its MQTT 5 properties; a new one
// replaces it under a higher version, an empty payload deletes it, and
// deleting what is not there changes nothing.
func TestRetainedSetReadDelete(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	m := &channels.Retained{Topic: "home/kitchen/temp", Payload: []byte("21.5"), QoS: 1, ProtocolVersion: 5,
		PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "text/plain", ResponseTopic: "home/reply",
		CorrelationData: []byte{0, 1, 2}, User: []channels.UserProperty{{Key: "a", Val: "1"}, {Key: "a", Val: "2"}, {Key: "ключ"}}}
	v1 := mustRetain(t, db, m)
	got, asOf, err := db.RetainedTopic(ctx, m.Topic)
	if err != nil || got == nil || asOf != v1 || got.Version != v1 {
		t.Fatalf("read %+v as of %d, %v; want version %d", got, asOf, err, v1)
	}
	want := *m
	want.Version, want.Created = v1, got.Created
	if !reflect.DeepEqual(*got, want) || time.Since(got.Created) > time.Minute {
		t.Fatalf("read %+v\nwant %+v", *got, want)
	}
	v2 := mustRetain(t, db, &channels.Retained{Topic: m.Topic, Payload: []byte("22"), ProtocolVersion: 4})
	if v2 <= v1 {
		t.Fatalf("versions %d then %d", v1, v2)
	}
	got, _, _ = db.RetainedTopic(ctx, m.Topic)
	if string(got.Payload) != "22" || got.PayloadFormatFlag || got.ContentType != "" || got.User != nil || got.CorrelationData != nil {
		t.Fatalf("replaced: %+v", got)
	}
	if n, b, v := retainedState(t, db); n != 1 || b != 2 || v != v2 {
		t.Fatalf("state %d messages %d bytes version %d", n, b, v)
	}
	v3 := mustRetain(t, db, &channels.Retained{Topic: m.Topic})
	if got, asOf, err := db.RetainedTopic(ctx, m.Topic); got != nil || asOf != v3 || err != nil || v3 <= v2 {
		t.Fatalf("after delete (version %d): %+v as of %d, %v", v3, got, asOf, err)
	}
	if v := mustRetain(t, db, &channels.Retained{Topic: "never/retained"}); v != 0 {
		t.Fatalf("deleting nothing took version %d", v)
	}
	if n, b, v := retainedState(t, db); n != 0 || b != 0 || v != v3 {
		t.Fatalf("state %d messages %d bytes version %d", n, b, v)
	}
	all, asOf, err := db.AllRetained(ctx)
	if err != nil || len(all) != 0 || asOf != v3 {
		t.Fatalf("all: %v as of %d, %v", all, asOf, err)
	}
}

// Topics at MQTT's edges: the longest one (multi-byte characters up to
// 65535 bytes, past what an index entry holds) is kept and read back;
// what MQTT forbids is refused with a message naming it, not a database
// error.
func TestRetainedTopics(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	long := strings.Repeat("ü/€", 65535/6) + "x"
	long += strings.Repeat("y", 65535-len(long))
	odd := []string{long, "🙂/\u200b/\ufeff", "/", "a//b/", "$notsys", " "}
	for _, topic := range odd {
		if _, err := db.SetRetained(ctx, &channels.Retained{Topic: topic, Payload: []byte(topic[:1])}, 100, 1<<20); err != nil {
			t.Fatalf("%.20q: %v", topic, err)
		}
		got, _, err := db.RetainedTopic(ctx, topic)
		if err != nil || got == nil || got.Topic != topic {
			t.Fatalf("%.20q: read %v, %v", topic, got != nil, err)
		}
	}
	all, _, err := db.AllRetained(ctx)
	if err != nil || len(all) != len(odd) {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	for _, c := range []struct{ topic, want string }{
		{"", "empty topic"}, {long + "z", "longer than 65535"}, {"a/+/b", "wildcard"}, {"a/#", "wildcard"},
		{"a\x00b", "NUL"}, {"a\xffb", "UTF-8"},
	} {
		_, err := db.SetRetained(ctx, &channels.Retained{Topic: c.topic, Payload: []byte("x")}, 100, 1<<20)
		if channels.ErrorCode(err) != channels.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.20q: %v, want EINVALID naming %q", c.topic, err, c.want)
		}
		if _, _, err := db.RetainedTopic(ctx, c.topic); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("read %.20q: %v", c.topic, err)
		}
	}
	for _, m := range []channels.Retained{
		{Topic: "t", Payload: []byte("x"), ContentType: "a\x00"},
		{Topic: "t", Payload: []byte("x"), ResponseTopic: "\xc3"},
		{Topic: "t", Payload: []byte("x"), User: []channels.UserProperty{{Key: "k", Val: "\x00"}}},
		{Topic: "t", Payload: []byte("x"), QoS: 3},
	} {
		if _, err := db.SetRetained(ctx, &m, 100, 1<<20); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("%+v: %v, want EINVALID", m, err)
		}
	}
}

// The bounds hold over every process sharing the database: writers on two
// handles racing past them store exactly what fits, no more, and the
// totals stay true. A message replacing one already retained fits when
// its bytes do; a payload larger than all the bytes allowed is refused.
func TestRetainedBoundsAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	dbs := []*DB{openTest(t, url, Options{}), openTest(t, url, Options{})}
	const maxMessages, maxBytes = 10, 1000
	var stored, full atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				_, err := dbs[w%2].SetRetained(ctx, &channels.Retained{Topic: fmt.Sprintf("w%d/%d", w, i), Payload: []byte("12345")},
					maxMessages, maxBytes)
				switch {
				case err == nil:
					stored.Add(1)
				case errors.Is(err, channels.ErrRetainedFull) && channels.ErrorCode(err) == channels.ELIMIT:
					full.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	all, _, err := dbs[0].AllRetained(ctx)
	if err != nil || stored.Load() != maxMessages || full.Load() != 40-maxMessages || len(all) != maxMessages {
		t.Fatalf("stored %d, refused %d, held %d (%v); want %d stored", stored.Load(), full.Load(), len(all), err, maxMessages)
	}
	if n, b, _ := retainedState(t, dbs[1]); n != maxMessages || b != 5*maxMessages {
		t.Fatalf("totals %d messages %d bytes", n, b)
	}
	// At the count bound, replacing a held topic is fine; its bytes count
	// once.
	if _, err := dbs[1].SetRetained(ctx, &channels.Retained{Topic: all[0].Topic, Payload: make([]byte, 955)}, maxMessages, maxBytes); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[0].SetRetained(ctx, &channels.Retained{Topic: all[1].Topic, Payload: make([]byte, 6)}, maxMessages, maxBytes); !errors.Is(err, channels.ErrRetainedFull) {
		t.Fatalf("past the byte bound: %v", err)
	}
	// Deleting frees a slot for a new topic.
	mustRetain(t, dbs[0], &channels.Retained{Topic: all[2].Topic})
	if _, err := dbs[1].SetRetained(ctx, &channels.Retained{Topic: "new", Payload: []byte("x")}, maxMessages, maxBytes); err != nil {
		t.Fatal(err)
	}
	_, err = dbs[0].SetRetained(ctx, &channels.Retained{Topic: "huge", Payload: make([]byte, maxBytes+1)}, 1000, maxBytes)
	if !errors.Is(err, channels.ErrRetainedFull) || !strings.Contains(err.Error(), "1001 bytes") {
		t.Fatalf("oversized: %v", err)
	}
	if n, b, _ := retainedState(t, dbs[1]); n != maxMessages || b != 955+5*8+1 {
		t.Fatalf("totals %d messages %d bytes", n, b)
	}
}

// Every change is announced to every process with its version and topic,
// never its payload; a topic too long for a notification is announced
// as a resync.
func TestRetainedChanges(t *testing.T) {
	url := pgtest.New(t)
	a, b := openTest(t, url, Options{}), openTest(t, url, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.RetainedChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() channels.RetainedChange {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change announced")
		}
		return channels.RetainedChange{}
	}
	v1 := mustRetain(t, a, &channels.Retained{Topic: "x/y", Payload: []byte("secret payload")})
	if c := next(); c != (channels.RetainedChange{Version: v1, Topic: "x/y"}) {
		t.Fatalf("set announced as %+v", c)
	}
	mustRetain(t, a, &channels.Retained{Topic: "not/there"}) // nothing to announce
	v2 := mustRetain(t, a, &channels.Retained{Topic: "x/y"})
	if c := next(); c != (channels.RetainedChange{Version: v2, Topic: "x/y"}) {
		t.Fatalf("delete announced as %+v", c)
	}
	long := strings.Repeat("l", maxNoticeTopic+1)
	v3 := mustRetain(t, a, &channels.Retained{Topic: long, Payload: []byte("x")})
	if c := next(); c != (channels.RetainedChange{Version: v3, Key: channels.RetainedKey(long)}) {
		t.Fatalf("long topic announced as %+v", c)
	}
	if m, asOf, err := b.RetainedByKey(ctx, channels.RetainedKey(long)); err != nil || m == nil || m.Topic != long || asOf != v3 {
		t.Fatalf("read by key: %v as of %d, %v", m != nil, asOf, err)
	}
	cancel()
	for range ch {
	}
}

// A message past its expiry is no longer read, and expiring it deletes
// it once, by the database's clock, whoever asks.
func TestRetainedExpiry(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	mustRetain(t, db, &channels.Retained{Topic: "short", Payload: []byte("x"), MessageExpiry: 3600, ProtocolVersion: 5})
	mustRetain(t, db, &channels.Retained{Topic: "long", Payload: []byte("yy"), MessageExpiry: 7200, ProtocolVersion: 5})
	got, _, _ := db.RetainedTopic(ctx, "short")
	if d := time.Until(got.Expires); d < 3590*time.Second || d > 3610*time.Second {
		t.Fatalf("expires in %v", d)
	}
	if err := db.ExpireRetained(ctx, "short"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := db.RetainedTopic(ctx, "short"); got == nil {
		t.Fatal("expired before its time")
	}
	if _, err := db.pool.Exec(ctx, "UPDATE retained SET expires_at = now() - interval '1 second' WHERE topic = 'short'"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := db.RetainedTopic(ctx, "short"); got != nil {
		t.Fatalf("read past its expiry: %+v", got)
	}
	if all, _, _ := db.AllRetained(ctx); len(all) != 1 || all[0].Topic != "long" {
		t.Fatalf("all: %+v", all)
	}
	_, _, before := retainedState(t, db)
	for range 2 {
		if err := db.ExpireRetained(ctx, "short"); err != nil {
			t.Fatal(err)
		}
	}
	if n, b, v := retainedState(t, db); n != 1 || b != 2 || v != before+1 {
		t.Fatalf("after expiry: %d messages %d bytes version %d (was %d)", n, b, v, before)
	}
	var rows int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM retained").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows, %v", rows, err)
	}

	// At the bounds, expired messages no server has expired yet make
	// room, each announced.
	ch, err := db.RetainedChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetRetained(ctx, &channels.Retained{Topic: "new", Payload: []byte("z")}, 1, 100); !errors.Is(err, channels.ErrRetainedFull) {
		t.Fatalf("past the bound with nothing expired: %v", err)
	}
	if _, err := db.pool.Exec(ctx, "UPDATE retained SET expires_at = now() - interval '1 second' WHERE topic = 'long'"); err != nil {
		t.Fatal(err)
	}
	v, err := db.SetRetained(ctx, &channels.Retained{Topic: "new", Payload: []byte("z")}, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n, b, last := retainedState(t, db); n != 1 || b != 1 || last != v || v != before+3 {
		t.Fatalf("after the purge: %d messages %d bytes version %d (stored %d, was %d)", n, b, last, v, before)
	}
	for _, want := range []channels.RetainedChange{{Version: before + 2, Topic: "long"}, {Version: before + 3, Topic: "new"}} {
		select {
		case c := <-ch:
			if c != want {
				t.Fatalf("announced %+v, want %+v", c, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%+v not announced", want)
		}
	}
}

func TestDecodeRetainedNotice(t *testing.T) {
	for _, c := range []struct {
		in   string
		want channels.RetainedChange
		ok   bool
	}{
		{"1 a/b", channels.RetainedChange{Version: 1, Topic: "a/b"}, true},
		{"42 a b c", channels.RetainedChange{Version: 42, Topic: "a b c"}, true},
		{"9223372036854775807 ü", channels.RetainedChange{Version: 9223372036854775807, Topic: "ü"}, true},
		{"7", channels.RetainedChange{Version: 7, Resync: true}, true},
		{"", channels.RetainedChange{}, false},
		{"0 a", channels.RetainedChange{}, false},
		{"01 a", channels.RetainedChange{}, false},
		{"+1 a", channels.RetainedChange{}, false},
		{"-1 a", channels.RetainedChange{}, false},
		{"9223372036854775808 a", channels.RetainedChange{}, false},
		{"1 ", channels.RetainedChange{}, false},
		{"1 a/+", channels.RetainedChange{}, false},
		{"1 a\x00", channels.RetainedChange{}, false},
		{" a", channels.RetainedChange{}, false},
		{"1a", channels.RetainedChange{}, false},
		{"3#" + strings.Repeat("0f", 32), channels.RetainedChange{Version: 3, Key: [32]byte{
			15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
			15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15}}, true},
		{"3#" + strings.Repeat("0F", 32), channels.RetainedChange{}, false},
		{"3#" + strings.Repeat("0f", 31), channels.RetainedChange{}, false},
		{"3#" + strings.Repeat("0f", 33), channels.RetainedChange{}, false},
		{"0#" + strings.Repeat("0f", 32), channels.RetainedChange{}, false},
		{"3 a#" + strings.Repeat("0f", 32), channels.RetainedChange{}, false},
		{"#" + strings.Repeat("0f", 32), channels.RetainedChange{}, false},
	} {
		got, err := decodeRetainedNotice(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

// A retained notification comes from whatever process shares the
// database: any bytes decode to a change or an error, never a panic, and
// what decodes survives a round trip.
func FuzzDecodeRetainedNotice(f *testing.F) {
	for _, s := range []string{"1 a/b", "7", "0 x", "12 ü/€", "1 +", "99999999999999999999 a", "3  ",
		"5#" + strings.Repeat("ab", 32), "5#" + strings.Repeat("AB", 32), "5 a#b", "#", "1#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeRetainedNotice(s)
		if err != nil {
			return
		}
		if c.Version <= 0 || c.Resync != (c.Topic == "" && c.Key == [32]byte{}) || c.Topic != "" && c.Key != [32]byte{} {
			t.Fatalf("%q decodes to %+v", s, c)
		}
		if again, err := decodeRetainedNotice(encodeRetainedNotice(c)); err != nil || again != c {
			t.Fatalf("%q: %+v does not survive a round trip: %+v, %v", s, c, again, err)
		}
	})
}

// check reports retained messages whose totals, versions or keys do not
// agree with the table (a hand edit, say); a consistent table has none.
func TestRetainedCheck(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.New(t), Options{})
	mustRetain(t, db, &channels.Retained{Topic: "a/ü", Payload: []byte("123")})
	mustRetain(t, db, &channels.Retained{Topic: "b", Payload: []byte("4")})
	rep, err := db.Check(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("consistent: %+v, %v", rep, err)
	}
	for _, sql := range []string{
		"UPDATE retained_state SET messages = 5, bytes = 9",
		"UPDATE retained SET version = 99 WHERE topic = 'b'",
		"UPDATE retained SET topic = 'c' WHERE topic = 'b'",
	} {
		if _, err := db.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = db.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"retained messages: the totals count 5, the table holds 2",
		"retained messages: the totals count 9 payload bytes, the table holds 4",
		"retained messages: the last change is version 2, 1 messages are newer",
		"retained messages: 1 are not keyed by their topic",
	}
	if !reflect.DeepEqual(rep.Problems, want) {
		t.Fatalf("problems %q\nwant %q", rep.Problems, want)
	}
}
