package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// appendEntries writes entries to channel 1 of an offline data directory.
func appendEntries(t *testing.T, dir string, es ...channels.Entry) {
	t.Helper()
	db, err := storage.Open(dir+"/feedmq.db", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range es {
		if err := db.AppendEntry(context.Background(), &es[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func entry(at time.Time, values map[int]string) channels.Entry {
	e := channels.Entry{ChannelID: 1, CreatedAt: at}
	for i, v := range values {
		e.SetValue(i, v)
	}
	return e
}

// feedInstances prepares channel 1 with three entries, then serves it
// through the admin socket or leaves it offline.
func feedInstance(t *testing.T, socket bool) string {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "W", "--field", "1=Temp", "--field", "2=Hum")
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	appendEntries(t, dir,
		entry(t0, map[int]string{0: "21.5", 1: "40"}),
		entry(t0.Add(time.Minute), map[int]string{1: "41", channels.Status: `door "open", again`}),
		entry(t0.Add(2*time.Minute), map[int]string{0: "22"}),
	)
	if !socket {
		return dir
	}
	s := startAdminServerOn(t, dir)
	return s.dir
}

func TestFeedGet(t *testing.T) {
	for _, socket := range []bool{false, true} {
		name := map[bool]string{false: "Offline", true: "Socket"}[socket]
		t.Run(name, func(t *testing.T) {
			dir := feedInstance(t, socket)
			t.Run("JSON", func(t *testing.T) {
				out := mustRun(t, dir, "feed", "get", "1")
				var got []map[string]any
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				if len(got) != 3 {
					t.Fatalf("got %d entries", len(got))
				}
				first := `{"channel_id":1,"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"21.5","field2":"40","field3":null,` +
					`"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":null,"longitude":null,"elevation":null,"status":null}`
				if !strings.HasPrefix(out, "[\n"+first+",\n") {
					t.Fatalf("output:\n%s", out)
				}
			})
			t.Run("Results", func(t *testing.T) {
				var got []map[string]any
				mustJSON(t, dir, &got, "feed", "get", "1", "--results", "2")
				if len(got) != 2 || got[0]["entry_id"] != 2.0 || got[1]["entry_id"] != 3.0 {
					t.Fatalf("got %v", got)
				}
			})
			t.Run("CSV", func(t *testing.T) {
				out := mustRun(t, dir, "feed", "get", "1", "--format", "csv")
				want := "created_at,entry_id,field1,field2,status\n" +
					"2026-11-22 10:00:00 UTC,1,21.5,40,\n" +
					"2026-11-22 10:01:00 UTC,2,,41,\"door \"\"open\"\", again\"\n" +
					"2026-11-22 10:02:00 UTC,3,22,,\n"
				if out != want {
					t.Fatalf("got\n%s\nwant\n%s", out, want)
				}
			})
			t.Run("CSVField", func(t *testing.T) {
				out := mustRun(t, dir, "feed", "get", "1", "--format", "csv", "--field", "1")
				want := "created_at,entry_id,field1\n2026-11-22 10:00:00 UTC,1,21.5\n2026-11-22 10:02:00 UTC,3,22\n"
				if out != want {
					t.Fatalf("got\n%s\nwant\n%s", out, want)
				}
			})
			t.Run("Errors", func(t *testing.T) {
				for _, tt := range []struct{ args, want string }{
					{"feed get 9", "channel 9 not found; see `feedmq channel list`"},
					{"feed get 1 --format xml", `invalid --format "xml": want json or csv`},
					{"feed get 1 --field 9", "field number must be from 1 to 8"},
					{"feed get 1 --results -1", "invalid --results -1"},
					{"feed get", "feedmq feed get takes one channel ID"},
				} {
					if got := mustFail(t, dir, strings.Fields(tt.args)...); !strings.Contains(got, tt.want) {
						t.Errorf("%s: got %q, want %q", tt.args, got, tt.want)
					}
				}
			})
		})
	}
}

func TestFeedGetEmpty(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "E")
	if out := mustRun(t, dir, "feed", "get", "1"); out != "[]\n" {
		t.Fatalf("got %q", out)
	}
	if out := mustRun(t, dir, "feed", "get", "1", "--format", "csv", "--field", "3"); out != "created_at,entry_id,field3\n" {
		t.Fatalf("got %q", out)
	}
}

// feed get --format csv quotes values a spreadsheet would run as formulas,
// and leaves negative numbers alone.
func TestFeedGetCSVFormulas(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "F", "--field", "1=a")
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	appendEntries(t, dir,
		entry(t0, map[int]string{0: "=HYPERLINK(\"http://example.com\")", channels.Status: "@SUM(1)"}),
		entry(t0.Add(time.Minute), map[int]string{0: "-2.5", channels.Status: "-2+3+cmd|' /C calc'!A0"}),
	)
	out := mustRun(t, dir, "feed", "get", "1", "--format", "csv")
	want := "created_at,entry_id,field1,status\n" +
		"2026-11-22 10:00:00 UTC,1,\"'=HYPERLINK(\"\"http://example.com\"\")\",'@SUM(1)\n" +
		"2026-11-22 10:01:00 UTC,2,-2.5,'-2+3+cmd|' /C calc'!A0\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}
