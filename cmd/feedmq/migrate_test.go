package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// startFeedServer runs a whole feedmq server (broker, HTTP API, admin
// socket) on a new data directory.
func startFeedServer(t *testing.T) (*server, string) {
	t.Helper()
	cfg := httpConfig(t)
	s, err := openServer(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, cfg.DataDir
}

func twoFieldSpec(name string, public bool) auth.ChannelSpec {
	spec := auth.ChannelSpec{Name: name, Public: public}
	spec.Fields[0], spec.Fields[1] = "Temp", "Hum"
	return spec
}

// fillSource stores n entries in channel id, seven to a second so that
// pages end inside a second, with a gap in the IDs and some entries
// carrying field2, a location and a status with a comma.
func fillSource(t *testing.T, svc admin.Service, id uint64, n int) {
	t.Helper()
	base := time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)
	var batch []channels.Entry
	for i := 0; i < n; i++ {
		eid := uint64(i + 1)
		if i >= 50 {
			eid += 1000 // IDs 51..1050 are missing
		}
		e := channels.Entry{ChannelID: id, ID: eid, CreatedAt: base.Add(time.Duration(i/7) * time.Second)}
		e.SetValue(0, fmt.Sprint(i))
		if i%3 == 0 {
			e.SetValue(1, fmt.Sprint(-i))
		}
		if i%500 == 0 {
			e.SetValue(channels.Latitude, "52.5")
			e.SetValue(channels.Longitude, "-13.25")
			e.SetValue(channels.Status, "ok, \"fine\"")
		}
		batch = append(batch, e)
		if len(batch) == admin.MaxImportBatch || i == n-1 {
			if _, err := svc.ImportEntries(context.Background(), id, batch, true); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// TestFeedMigrate moves a channel of more than one page from one running
// feedmq to another through the read API, and checks that every entry
// arrived as it was, and that the target numbers new writes on.
func TestFeedMigrate(t *testing.T) {
	ctx := context.Background()
	src, _ := startFeedServer(t)
	dst, dstDir := startFeedServer(t)
	base := "http://" + src.addr("http").String()

	const n = 8603 // the newest 8000 start inside a second
	pub, err := src.svc.CreateChannel(ctx, twoFieldSpec("public", true))
	if err != nil {
		t.Fatal(err)
	}
	fillSource(t, src.svc, pub.ID, n)
	priv, err := src.svc.CreateChannel(ctx, twoFieldSpec("private", false))
	if err != nil {
		t.Fatal(err)
	}
	fillSource(t, src.svc, priv.ID, 20)
	target, err := dst.svc.CreateChannel(ctx, twoFieldSpec("moved", false))
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, err := runCommand(t, "--data", dstDir, "feed", "migrate", "--from", base, "--channel", "1", "--to", "1", "--json")
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	want := map[string]any{"channel": 1.0, "entries": float64(n), "ids_kept": true, "first_id": 1.0, "last_id": float64(n + 1000),
		"first_created_at": "2020-03-01T00:00:00Z", "last_created_at": time.Date(2020, 3, 1, 0, 0, (n-1)/7, 0, time.UTC).Format(channels.TimeFormat),
		"pages": 2.0}
	if !reflect.DeepEqual(sum, want) {
		t.Fatalf("summary %v\nwant    %v", sum, want)
	}
	if !strings.Contains(errOut, "read page 2: ") {
		t.Errorf("progress %q", errOut)
	}
	from, err := src.svc.Entries(ctx, pub.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.svc.Entries(ctx, target.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, from) {
		t.Fatalf("target has %d entries, source %d; first difference:\n%v", len(got), len(from), firstDiff(got, from))
	}
	// A write to the target continues after the highest migrated ID.
	code, body := httpDo(t, "GET", "http://"+dst.addr("http").String()+"/update?api_key="+target.WriteKey+"&field1=1", "", "")
	if code != 200 || body != fmt.Sprint(n+1001) {
		t.Fatalf("update after migrate: %d %q", code, body)
	}

	// A private channel needs its read key, which never shows in output.
	second, err := dst.svc.CreateChannel(ctx, twoFieldSpec("moved private", false))
	if err != nil {
		t.Fatal(err)
	}
	to := fmt.Sprint(second.ID)
	msg := mustFail(t, dstDir, "feed", "migrate", "--from", base, "--channel", fmt.Sprint(priv.ID), "--to", to)
	if !strings.Contains(msg, "is private and needs its read API key (--api-key)") || !strings.Contains(msg, "nothing was stored") {
		t.Fatalf("no key: %q", msg)
	}
	bad := "WRONGKEY00000000"
	msg = mustFail(t, dstDir, "feed", "migrate", "--from", base, "--channel", fmt.Sprint(priv.ID), "--to", to, "--api-key", bad)
	if !strings.Contains(msg, "the key is wrong") || strings.Contains(msg, bad) {
		t.Fatalf("wrong key: %q", msg)
	}
	out, errOut, err = runCommand(t, "--data", dstDir, "feed", "migrate", "--from", base+"/", "--channel", fmt.Sprint(priv.ID), "--to", to, "--api-key", priv.ReadKey)
	if err != nil || !strings.HasPrefix(out, "Migrated 20 entries into channel 2 (entry IDs kept): entries 1 to 20,") {
		t.Fatalf("with key: %q %v", out, err)
	}
	if strings.Contains(out+errOut, priv.ReadKey) {
		t.Fatalf("the read key shows in the output: %q %q", out, errOut)
	}
	// Into a channel with entries, the migration numbers on; the source
	// is older than the target's newest entry here, so it is refused.
	msg = mustFail(t, dstDir, "feed", "migrate", "--from", base, "--channel", fmt.Sprint(priv.ID), "--to", to, "--api-key", priv.ReadKey)
	if !strings.Contains(msg, "source entry 1: created_at 2020-03-01 00:00:00 UTC is older than channel 2's newest entry (20,") {
		t.Fatalf("into a channel with newer entries: %q", msg)
	}
	// --max-pages stops a channel larger than allowed.
	msg = mustFail(t, dstDir, "feed", "migrate", "--from", base, "--channel", "1", "--to", to, "--max-pages", "1")
	if !strings.Contains(msg, "more than 1 pages of 8000 entries; raise --max-pages") {
		t.Fatalf("max pages: %q", msg)
	}
}

func firstDiff(a, b []channels.Entry) string {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			return fmt.Sprintf("%d: %+v\n   %+v", i, a[i], b[i])
		}
	}
	return "lengths"
}

// fakeSource is a ThingSpeak stand-in that answers with fail until it
// has failed fails times, then with page.
func fakeSource(t *testing.T, fails int, fail func(w http.ResponseWriter), page string) (*httptest.Server, *atomic.Int32, *atomic.Value) {
	var calls atomic.Int32
	var lastQuery atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastQuery.Store(r.URL.RawQuery)
		if int(calls.Add(1)) <= fails {
			fail(w)
			return
		}
		if r.URL.Path != "/channels/9/feeds.json" {
			http.NotFound(w, r)
			return
		}
		if end := r.URL.Query().Get("end"); end != "9999-12-31 23:59:59" {
			io.WriteString(w, `{"channel":{"id":9},"feeds":[]}`)
			return
		}
		io.WriteString(w, page)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &lastQuery
}

const thingSpeakPage = `{"channel":{"id":9,"name":"x","field1":"Temp","last_entry_id":12},"feeds":[` +
	`{"created_at":"2021-05-21T16:41:53Z","entry_id":11,"field1":"100","field2":null},` +
	`{"created_at":"2021-11-10T03:41:41Z","entry_id":12,"field1":21.5,"status":""}]}`

func TestFeedMigrateSourceErrors(t *testing.T) {
	old := migrateRetryWait
	migrateRetryWait = 10 * time.Millisecond
	t.Cleanup(func() { migrateRetryWait = old })
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "x", "--field", "1=A")
	migrateTo := func(srv *httptest.Server, extra ...string) (string, error) {
		args := append([]string{"--data", dir, "feed", "migrate", "--from", srv.URL, "--channel", "9", "--to", "1"}, extra...)
		out, _, err := runCommand(t, args...)
		return out, err
	}

	// Rate limited twice (Retry-After honoured), then served; values may
	// be numbers, and the key is sent.
	srv, calls, query := fakeSource(t, 2, func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
	}, thingSpeakPage)
	out, err := migrateTo(srv, "--api-key", "READKEY123")
	if err != nil || !strings.HasPrefix(out, "Migrated 2 entries into channel 1 (entry IDs kept): entries 11 to 12,") {
		t.Fatalf("after 429: %q %v", out, err)
	}
	if c := calls.Load(); c != 4 { // two refused, the page, the empty page before it
		t.Errorf("%d requests, want 4", c)
	}
	if q := query.Load().(string); !strings.Contains(q, "api_key=READKEY123") || !strings.Contains(q, "results=8000") || !strings.Contains(q, "start=1970-01-01+00%3A00%3A00") || !strings.Contains(q, "timezone=UTC") || !strings.Contains(q, "end=2021-05-21+16%3A41%3A53") {
		t.Errorf("last query %q", q)
	}
	es := feedEntries(t, dir, "1")
	if len(es) != 2 || es[1]["field1"] != "21.5" || es[1]["status"] != nil {
		t.Fatalf("entries %v", es)
	}

	for _, tc := range []struct {
		name  string
		fails int
		fail  func(w http.ResponseWriter)
		page  string
		args  []string
		want  string
	}{
		{"always 500", 100, func(w http.ResponseWriter) { http.Error(w, "boom", 500) }, "", nil, `HTTP 500: "boom"`},
		{"always 429", 100, func(w http.ResponseWriter) { w.WriteHeader(429) }, "", nil, "HTTP 429: the source keeps refusing"},
		{"minus one", 1, func(w http.ResponseWriter) { w.WriteHeader(400); io.WriteString(w, "-1") }, "", []string{"--api-key", "SECRETKEY"}, "is private and needs its read API key"},
		{"not json", 0, nil, "<html>hello</html>", nil, "the answer is not a ThingSpeak feed"},
		{"bad time", 0, nil, `{"feeds":[{"created_at":"yesterday","entry_id":1,"field1":"1"}]}`, nil, "feed entry 1 of the page: created_at must look like"},
		{"no id", 0, nil, `{"feeds":[{"created_at":"2021-05-21T16:41:53Z","field1":"1"}]}`, nil, "feed entry 1 of the page: it has no entry_id"},
		{"object value", 0, nil, `{"feeds":[{"created_at":"2021-05-21T16:41:53Z","entry_id":1,"field1":{}}]}`, nil, "field1 is neither text nor a number"},
		{"disabled field", 0, nil, `{"feeds":[{"created_at":"2021-05-21T16:41:53Z","entry_id":1,"field3":"1"}]}`, nil, "the source uses field3, which channel 1 has not enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, _ := fakeSource(t, tc.fails, tc.fail, tc.page)
			_, err := migrateTo(srv, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was stored") {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRETKEY") {
				t.Fatalf("error shows the key: %v", err)
			}
		})
	}

	// A source that does not answer in time.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	if _, err := migrateTo(hang, "--timeout", "200ms", "--api-key", "SECRETKEY"); err == nil ||
		!strings.Contains(err.Error(), "no answer within the --timeout") || strings.Contains(err.Error(), "SECRETKEY") {
		t.Fatalf("timeout: %v", err)
	}
	for _, args := range [][]string{
		{"--from", "ftp://x", "--channel", "9", "--to", "1"},
		{"--from", "http://user:pw@127.0.0.1", "--channel", "9", "--to", "1"},
		{"--from", "http://127.0.0.1?x=1", "--channel", "9", "--to", "1"},
		{"--from", "http://127.0.0.1", "--channel", "0", "--to", "1"},
		{"--from", "http://127.0.0.1", "--channel", "9", "--to", "x"},
		{"--from", "http://127.0.0.1", "--channel", "9", "--to", "1", "--api-key", "a&b=c"},
		{"--from", "http://127.0.0.1", "--channel", "9"},
	} {
		if msg := mustFail(t, dir, append([]string{"feed", "migrate"}, args...)...); !strings.Contains(msg, "invalid") && !strings.Contains(msg, "required") {
			t.Errorf("%v: %q", args, msg)
		}
	}
}

// TestImportWhileServing imports into the channel of a running server
// through its socket: subscribers are not sent the history, the reads
// serve it at once, and the next live write is numbered after it.
func TestImportWhileServing(t *testing.T) {
	s, dir := startFeedServer(t)
	ch, err := s.svc.CreateChannel(t.Context(), twoFieldSpec("garden", true))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.addr("http").String()
	msgs := make(chan string, 100)
	o := paho.NewClientOptions().AddBroker("tcp://" + s.addr("mqtt").String()).SetClientID("import-sub").
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- string(m.Payload()) })
	sub := paho.NewClient(o)
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("channels/1/subscribe", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	file := t.TempDir() + "/h.csv"
	writeFile(t, file, "created_at,entry_id,field1\n2020-01-01 00:00:00 UTC,40,1\n2020-01-01 00:01:00 UTC,41,2\n")
	out := mustRun(t, dir, "feed", "import", fmt.Sprint(ch.ID), file)
	if !strings.HasPrefix(out, "Imported 2 entries into channel 1 (entry IDs kept): entries 40 to 41") {
		t.Fatalf("import: %q", out)
	}
	if code, body := httpDo(t, "GET", base+"/channels/1/feeds.json?results=10", "", ""); code != 200 || !strings.Contains(body, `"last_entry_id":41`) || strings.Count(body, `"entry_id"`) != 2 {
		t.Fatalf("feeds.json after import: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/update?api_key="+ch.WriteKey+"&field1=3", "", ""); code != 200 || body != "42" {
		t.Fatalf("update after import: %d %q", code, body)
	}
	select {
	case m := <-msgs:
		if !strings.Contains(m, `"entry_id":42`) {
			t.Fatalf("the first message is %s, want the live entry 42", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message for the live write")
	}
}

// A migration from another feedmq takes entries dated ahead of the
// source's clock too: the source's reads end now unless told otherwise,
// so its first page is asked for up to a far end.
func TestFeedMigrateFutureDated(t *testing.T) {
	ctx := context.Background()
	src, _ := startFeedServer(t)
	dst, dstDir := startFeedServer(t)
	ch, err := src.svc.CreateChannel(ctx, twoFieldSpec("ahead", true))
	if err != nil {
		t.Fatal(err)
	}
	var es []channels.Entry
	for i, at := range []time.Time{
		time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		e := channels.Entry{ChannelID: ch.ID, ID: uint64(i + 1), CreatedAt: at}
		e.SetValue(0, fmt.Sprint(i))
		es = append(es, e)
	}
	if _, err := src.svc.ImportEntries(ctx, ch.ID, es, true); err != nil {
		t.Fatal(err)
	}
	target, err := dst.svc.CreateChannel(ctx, twoFieldSpec("moved", true))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + src.addr("http").String()
	if _, errOut, err := runCommand(t, "--data", dstDir, "feed", "migrate", "--from", base, "--channel", fmt.Sprint(ch.ID), "--to", fmt.Sprint(target.ID)); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut)
	}
	from, err := src.svc.Entries(ctx, ch.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.svc.Entries(ctx, target.ID, channels.EntryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, from) {
		t.Fatalf("target has %d entries, source %d; first difference:\n%v", len(got), len(from), firstDiff(got, from))
	}
}
