package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedmq/feedmq/internal/browsertest"
)

// TestConsoleImportBrowser: the owner imports a ThingSpeak export through
// the channel page's Import CSV form of a real `feedmq serve` in headless
// Chromium. The page says what was stored, the entries keep their IDs
// (with the export's gap) and times, and a chart of the channel draws
// every one. A file with a bad row is refused with its line, and nothing
// of it is stored. With FEEDMQ_SCREENSHOTS=DIR the channel page after the
// import is saved as DIR/console-import.png.
func TestConsoleImportBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	data := t.TempDir()
	out, err := exec.Command(plainBuild.binary(t), "--data", data, "channel", "create", "--name", "Greenhouse",
		"--field", "1=Temperature", "--field", "2=Humidity", "--json").Output()
	if err != nil {
		t.Fatalf("channel create: %v\n%s", err, out)
	}
	var ch struct {
		ReadKey string `json:"read_api_key"`
	}
	if err := json.Unmarshal(out, &ch); err != nil {
		t.Fatal(err)
	}
	// ThingSpeak's export: BOM, CRLF, every column, entry 5 deleted.
	var csv strings.Builder
	csv.WriteString("\ufeffcreated_at,entry_id,field1,field2,latitude,longitude,elevation,status\r\n")
	start := time.Date(2024, 6, 1, 8, 0, 0, 0, time.UTC)
	const rows = 12
	for i, id := 0, 1; i < rows; i, id = i+1, id+1 {
		if id == 5 {
			id++
		}
		fmt.Fprintf(&csv, "%s,%d,%.2f,%d,,,,\r\n", start.Add(time.Duration(i)*10*time.Minute).Format("2006-01-02 15:04:05 UTC"), id, 18+float64(i)/4, 60-i)
	}
	file := filepath.Join(t.TempDir(), "feeds.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("created_at,field1\n2024-06-02 08:00:00 UTC,1\nJune 2nd,2\n2024-06-02 08:20:00 UTC,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := startServeWith(t, plainBuild, data, "--mqtt", "127.0.0.1:0", "--ws", "off", "--http", "127.0.0.1:0", "--log-level", "info")
	base := "http://" + srv.addrs["http"]
	if !srv.logs.waitFor("/console/setup?token=", 10*time.Second) {
		t.Fatalf("no setup link in the log:\n%s", srv.logs.String())
	}
	link := setupLinkRE.FindString(srv.logs.String())

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	bctx, cancelBrowser := browsertest.New(ctx, t, chrome, 1280, 1100)
	defer cancelBrowser()
	// The first run starts the browser, which lives as long as its
	// context: bctx, not a step's.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		t.Cleanup(cancel)
		if err := chromedp.Do(sctx, steps...); err != nil {
			dctx, cancel := context.WithTimeout(bctx, 2*time.Second)
			defer cancel()
			page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\npage: %s", what, err, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}

	const password = "a long owner password"
	do("setup", chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), password), chromedp.SendKeys(chromedp.CSS(`#confirm`), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/channels/new"]`)))
	do("channel page", chromedp.Navigate(base+"/console/channels/1"), chromedp.WaitVisible(chromedp.CSS(`#import-file`)))
	if label, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('import-file').labels[0].textContent`)); err != nil || label != "CSV file" {
		t.Errorf("the file input's label: %q %v", label, err)
	}

	// The export: stored with its IDs and times.
	do("import", chromedp.SetUploadFiles(chromedp.CSS(`#import-file`), []string{file}),
		chromedp.Click(chromedp.CSS(`form.importform button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice.ok`)))
	want := "Imported 12 entries (entry IDs kept): entries 1 to 13, 2024-06-01 08:00:00 UTC to 2024-06-01 09:50:00 UTC."
	if got := text(`.notice.ok`); got != want {
		t.Fatalf("notice %q, want %q", got, want)
	}
	if got := text(`.danger-zone p`); got != "The feed has 12 entries (the last is number 13)." {
		t.Errorf("entry count %q", got)
	}
	if dir := os.Getenv("FEEDMQ_SCREENSHOTS"); dir != "" {
		do("scroll", chromedp.ScrollIntoView(chromedp.CSS(`#import-h`)))
		shot(t, bctx, filepath.Join(dir, "console-import.png"))
	}
	waitEntries(t, base, "1", ch.ReadKey+"&results=100", rows)
	feed := readFeed(t, base+"/channels/1/feeds.json?results=100&api_key="+ch.ReadKey)
	if len(feed) != rows || feed[0].ID != 1 || feed[4].ID != 6 || feed[rows-1].ID != 13 || feed[rows-1].CreatedAt != "2024-06-01T09:50:00Z" || feed[rows-1].Field1 != "20.75" {
		t.Errorf("feed after the import: %+v", feed)
	}

	// A chart of the channel draws every imported entry.
	do("chart", chromedp.Navigate(fmt.Sprintf("%s/channels/1/charts/1?results=100&api_key=%s", base, ch.ReadKey)),
		chromedp.Poll[chromedp.Void](`document.getElementById('embed').dataset.points === '12'`, chromedp.WithPollingTimeout(10*time.Second)))

	// A file with a bad row: refused with its line; nothing of it stored.
	do("channel page again", chromedp.Navigate(base+"/console/channels/1"), chromedp.WaitVisible(chromedp.CSS(`#import-file`)))
	do("bad import", chromedp.SetUploadFiles(chromedp.CSS(`#import-file`), []string{bad}),
		chromedp.Click(chromedp.CSS(`form.importform button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice.error`)))
	if got := text(`.notice.error`); !strings.HasPrefix(got, "Line 3: created_at must look like") || !strings.HasSuffix(got, "; nothing was stored.") {
		t.Errorf("refusal %q", got)
	}
	if n := len(readFeed(t, base+"/channels/1/feeds.json?results=100&api_key="+ch.ReadKey)); n != rows {
		t.Errorf("%d entries after a refused file, want %d", n, rows)
	}
}

type feedEntry struct {
	ID        uint64 `json:"entry_id"`
	CreatedAt string `json:"created_at"`
	Field1    string `json:"field1"`
}

// readFeed reads a feeds.json answer's entries.
func readFeed(t *testing.T, u string) []feedEntry {
	t.Helper()
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("%s: %d %v %s", u, r.StatusCode, err, resp)
	}
	var feed struct {
		Feeds []feedEntry `json:"feeds"`
	}
	if err := json.Unmarshal(resp, &feed); err != nil {
		t.Fatalf("%s: %v %s", u, err, resp)
	}
	return feed.Feeds
}
