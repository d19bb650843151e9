package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// feedEntries returns every entry of channel 1 of dir as JSON objects.
func feedEntries(t *testing.T, dir, id string) []map[string]any {
	t.Helper()
	var es []map[string]any
	mustJSON(t, dir, &es, "feed", "get", id, "--results", "0")
	return es
}

func channelLastID(t *testing.T, dir, id string) float64 {
	t.Helper()
	var c map[string]any
	mustJSON(t, dir, &c, "channel", "show", id, "--json")
	return c["last_entry_id"].(float64)
}

func TestFeedImport(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "weather", "--field", "1=Temp", "--field", "2=Hum")
		file := filepath.Join(t.TempDir(), "feeds.csv")
		writeFile(t, file, "\ufeffcreated_at,entry_id,field1,field2,latitude,longitude,elevation,status\r\n"+
			"2021-02-18 21:46:23 UTC,3,6.000000,12.000000,,,,\r\n"+
			"2023-01-06T16:44:16+00:00,5,7,,52.5,13.4,34,\"door open, back\"\r\n"+
			"2023-01-06T18:00:00+01:00,9,8,,,,,\r\n")
		var sum map[string]any
		mustJSON(t, dir, &sum, "feed", "import", "1", file, "--json")
		want := map[string]any{"channel": 1.0, "entries": 3.0, "ids_kept": true, "first_id": 3.0, "last_id": 9.0,
			"first_created_at": "2021-02-18T21:46:23Z", "last_created_at": "2023-01-06T17:00:00Z"}
		if !reflect.DeepEqual(sum, want) {
			t.Fatalf("summary %v\nwant %v", sum, want)
		}
		es := feedEntries(t, dir, "1")
		if len(es) != 3 || es[0]["entry_id"] != 3.0 || es[1]["entry_id"] != 5.0 || es[2]["entry_id"] != 9.0 {
			t.Fatalf("entries %v", es)
		}
		if es[1]["created_at"] != "2023-01-06T16:44:16Z" || es[1]["status"] != "door open, back" || es[1]["latitude"] != "52.5" || es[1]["field2"] != nil {
			t.Fatalf("entry 5 = %v", es[1])
		}
		if got := channelLastID(t, dir, "1"); got != 9 {
			t.Fatalf("last_entry_id %v, want 9", got)
		}

		// Into a channel with entries, rows are numbered on.
		more := filepath.Join(t.TempDir(), "more.csv")
		writeFile(t, more, "created_at,entry_id,field1\n2023-01-06 17:00:00 UTC,1,10\n2024-01-01 00:00:00 UTC,2,11\n")
		out := mustRun(t, dir, "feed", "import", "1", more)
		if want := "Imported 2 entries into channel 1 (numbered on after the channel's last entry): entries 10 to 11, 2023-01-06 17:00:00 UTC to 2024-01-01 00:00:00 UTC.\n"; out != want {
			t.Fatalf("output %q\nwant %q", out, want)
		}
		// A row older than the newest entry is refused with its line.
		writeFile(t, more, "created_at,field1\n2024-01-01 00:00:00 UTC,12\n2023-12-31 23:59:59 UTC,13\n")
		msg := mustFail(t, dir, "feed", "import", "1", more)
		if !strings.Contains(msg, "line 3: created_at 2023-12-31 23:59:59 UTC is older than line 2 (2024-01-01 00:00:00 UTC)") ||
			!strings.Contains(msg, "nothing was stored") {
			t.Fatalf("error %q", msg)
		}
		if got := channelLastID(t, dir, "1"); got != 11 {
			t.Fatalf("last_entry_id %v after a refused file, want 11", got)
		}
	})
}

// TestFeedImportPartial: a file refused part way reports the line and
// what the batches before it stored, and those stay stored.
func TestFeedImportPartial(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "big", "--field", "1=A")
		var b strings.Builder
		b.WriteString("created_at,entry_id,field1\n")
		for i := 1; i <= 2500; i++ {
			v := fmt.Sprint(i)
			if i == 2300 {
				v = "a\x01b"
			}
			fmt.Fprintf(&b, "2020-01-01 %02d:%02d:%02d UTC,%d,%s\n", i/3600, i/60%60, i%60, i, v)
		}
		file := filepath.Join(t.TempDir(), "big.csv")
		writeFile(t, file, b.String())
		msg := mustFail(t, dir, "feed", "import", "1", file)
		want := "line 2301: field1 contains the control character 0x01; 2000 entries before it were stored (entries 1 to 2000, through line 2001)"
		if msg != want {
			t.Fatalf("error %q\nwant  %q", msg, want)
		}
		if got := channelLastID(t, dir, "1"); got != 2000 {
			t.Fatalf("last_entry_id %v, want 2000", got)
		}
	})
}

func TestFeedImportRefused(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "x", "--field", "1=A")
		tmp := t.TempDir()
		for _, tc := range []struct{ name, csv, want string }{
			{"no header", "", "line 1: the file is empty"},
			{"unknown column", "created_at,api_key\n", `line 1: column 2, "api_key", is not one of`},
			{"disabled field", "created_at,field2\n2020-01-01 00:00:00 UTC,1\n", "line 2: field2 is not enabled on channel 1; nothing was stored"},
			{"ids falling", "created_at,entry_id,field1\n2020-01-01 00:00:00 UTC,5,1\n2020-01-01 00:00:01 UTC,4,1\n",
				"line 3: entry_id 4 is not above the one before it (5); IDs must rise; nothing was stored"},
			{"newest first", "created_at,field1\n2020-01-02 00:00:00 UTC,1\n2020-01-01 00:00:00 UTC,1\n", "line 3: created_at 2020-01-01 00:00:00 UTC is older than line 2 (2020-01-02 00:00:00 UTC); entries must be oldest first and not older than the channel's newest entry (the source seems to be newest first: sort it oldest first); nothing was stored"},
			{"bad time", "created_at,field1\nnow,1\n", "line 2: created_at must look like"},
			{"bad quote", "created_at,field1\n\"2020,1\n", "line 2: malformed CSV"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file := filepath.Join(tmp, tc.name+".csv")
				writeFile(t, file, tc.csv)
				if msg := mustFail(t, dir, "feed", "import", "1", file); !strings.Contains(msg, tc.want) {
					t.Fatalf("error %q, want %q", msg, tc.want)
				}
			})
		}
		if msg := mustFail(t, dir, "feed", "import", "7", filepath.Join(tmp, "bad time.csv")); !strings.Contains(msg, "channel 7 not found; see `feedmq channel list`") {
			t.Fatalf("missing channel: %q", msg)
		}
		if msg := mustFail(t, dir, "feed", "import", "1", filepath.Join(tmp, "nope.csv")); !strings.Contains(msg, "no such file") {
			t.Fatalf("missing file: %q", msg)
		}
		if msg := mustFail(t, dir, "feed", "import", "1"); !strings.Contains(msg, "takes a channel ID and a CSV file") {
			t.Fatalf("one argument: %q", msg)
		}
		if got := channelLastID(t, dir, "1"); got != 0 {
			t.Fatalf("refused files stored entries: last_entry_id %v", got)
		}
	})
}

// TestFeedImportStdin reads the file from standard input.
func TestFeedImportStdin(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "channel", "create", "--name", "x", "--field", "1=A")
	root := newRootCommand()
	root.SetIn(strings.NewReader("created_at,field1\n2020-01-01 00:00:00 UTC,1\n"))
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(os.Stderr)
	root.SetArgs([]string{"--data", dir, "feed", "import", "1", "-"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Imported 1 entries into channel 1") {
		t.Fatalf("output %q", out.String())
	}
	var es []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "feed", "get", "1")), &es); err != nil || len(es) != 1 {
		t.Fatalf("entries %v %v", es, err)
	}
}

// TestFeedImportLongValues: batches of long values that JSON spells six
// bytes a character still fit the admin socket's request limit.
func TestFeedImportLongValues(t *testing.T) {
	forEachInstance(t, func(t *testing.T, dir string) {
		mustRun(t, dir, "channel", "create", "--name", "x", "--field", "1=A")
		var b strings.Builder
		b.WriteString("created_at,field1,status\n")
		long := strings.Repeat("<", 255)
		for i := 0; i < 2100; i++ {
			fmt.Fprintf(&b, "2020-01-01 00:00:00 UTC,%s,%s\n", long, long)
		}
		file := filepath.Join(t.TempDir(), "long.csv")
		writeFile(t, file, b.String())
		var sum map[string]any
		mustJSON(t, dir, &sum, "feed", "import", "1", file, "--json")
		if sum["entries"] != 2100.0 || sum["last_id"] != 2100.0 || sum["ids_kept"] != false {
			t.Fatalf("summary %v", sum)
		}
	})
}
