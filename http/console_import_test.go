package httpd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// uploadForm is a multipart body as the channel page's Import CSV form
// sends it: csrf, form_id, then the file. A part whose value is nil is
// left out.
type uploadForm struct {
	csrf, formID *string
	filename     string
	file         io.Reader
}

func strp(s string) *string { return &s }

// multipartBody writes f and returns the body and its content type.
func (f uploadForm) body() (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range []struct {
			name string
			v    *string
		}{{"csrf", f.csrf}, {"form_id", f.formID}} {
			if p.v != nil {
				mw.WriteField(p.name, *p.v)
			}
		}
		if f.file != nil {
			w, err := mw.CreateFormFile("file", f.filename)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(w, f.file); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

// upload sends csv to channel id's import form as a browser would, with
// the csrf token and one-time id of the channel page, which it loads
// first. The body goes with its length unless chunked.
func (b *browser) upload(id uint64, csv string, chunked bool, hdr ...string) page {
	b.e.t.Helper()
	p := b.get(fmt.Sprintf("/console/channels/%d", id))
	m := formIDRE.FindAllStringSubmatch(p.body, -1)
	if p.status != 200 || len(m) == 0 {
		b.e.t.Fatalf("channel page: %d, no form_id\n%s", p.status, p.body)
	}
	return b.send(id, uploadForm{csrf: strp(b.csrf), formID: strp(m[len(m)-1][1]), filename: "feeds.csv", file: strings.NewReader(csv)}, chunked, hdr...)
}

// send posts f to channel id's import route.
func (b *browser) send(id uint64, f uploadForm, chunked bool, hdr ...string) page {
	b.e.t.Helper()
	body, ct := f.body()
	if !chunked {
		all, err := io.ReadAll(body)
		if err != nil {
			b.e.t.Fatal(err)
		}
		body = bytes.NewReader(all)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/console/channels/%d/import", b.e.srv.URL, id), body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Origin", b.e.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return b.do(req)
}

// feedOf lists channel id's entries, oldest first, as "id:created_at:field1".
func (e *consoleEnv) feedOf(id uint64) string {
	e.t.Helper()
	es, err := e.db.Entries(e.t.Context(), id, channels.EntryFilter{Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, x := range es {
		v, _ := x.Field(1)
		out = append(out, fmt.Sprintf("%d:%s:%s", x.ID, x.CreatedAt.UTC().Format("15:04:05"), v))
	}
	return strings.Join(out, " ")
}

// TestConsoleImport: a ThingSpeak export uploaded on the channel page of
// an empty channel keeps its entry IDs and times; a second file into the
// now non-empty channel is numbered on after the last entry, as the CLI's
// import does. Sending the same form again (a reload) imports nothing.
func TestConsoleImport(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	ch, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "Import", Fields: [8]string{"Temperature"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := b.get(fmt.Sprintf("/console/channels/%d", ch.ID)); !strings.Contains(p.body, `enctype="multipart/form-data"`) || !strings.Contains(p.body, "Import CSV") {
		t.Fatalf("no import form on the channel page:\n%s", p.body)
	}
	// ThingSpeak's own export: BOM, CRLF, " UTC" times, gaps in the IDs.
	export := "\ufeffcreated_at,entry_id,field1\r\n" +
		"2024-03-01 10:00:00 UTC,5,20.5\r\n" +
		"2024-03-01 10:01:00 UTC,7,21\r\n" +
		"2024-03-01T10:02:00+00:00,9,21.5\r\n"
	p := b.upload(ch.ID, export, false)
	if p.status != 200 || !strings.Contains(p.body, "Imported 3 entries (entry IDs kept): entries 5 to 9, 2024-03-01 10:00:00 UTC to 2024-03-01 10:02:00 UTC.") {
		t.Fatalf("import: %d\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, "The feed has 3 entries (the last is number 9)") {
		t.Errorf("the page does not show the new count:\n%s", p.body)
	}
	if got, want := e.feedOf(ch.ID), "5:10:00:00:20.5 7:10:01:00:21 9:10:02:00:21.5"; got != want {
		t.Errorf("feed %s, want %s", got, want)
	}

	// Into a channel with entries: numbered on, IDs of the file ignored.
	more := "created_at,entry_id,field1\n2024-03-01 10:03:00 UTC,1,22\n2024-03-01 10:04:00 UTC,2,22.5\n"
	p = b.upload(ch.ID, more, true)
	if p.status != 200 || !strings.Contains(p.body, "Imported 2 entries (numbered on after the channel&#39;s last entry): entries 10 to 11") {
		t.Fatalf("second import: %d\n%s", p.status, p.body)
	}

	// The answer's address, loaded again, is the channel page.
	if p := b.get(fmt.Sprintf("/console/channels/%d/import", ch.ID)); p.status != http.StatusSeeOther || p.resp.Header.Get("Location") != fmt.Sprintf("/console/channels/%d", ch.ID) {
		t.Errorf("GET import: %d %s", p.status, p.resp.Header.Get("Location"))
	}

	// The same form again: nothing more is stored.
	p = b.get(fmt.Sprintf("/console/channels/%d", ch.ID))
	id := formIDRE.FindStringSubmatch(p.body)[1]
	last := "created_at,field1\n2024-03-01 10:05:00 UTC,23\n"
	form := uploadForm{csrf: strp(b.csrf), formID: strp(id), filename: "a.csv"}
	form.file = strings.NewReader(last)
	if p := b.send(ch.ID, form, false); p.status != 200 {
		t.Fatalf("third import: %d\n%s", p.status, p.body)
	}
	form.file = strings.NewReader(last)
	if p := b.send(ch.ID, form, false); p.status != http.StatusConflict || !strings.Contains(p.body, "sent already") {
		t.Fatalf("sent again: %d\n%s", p.status, p.body)
	}
	if got := e.feedOf(ch.ID); !strings.HasSuffix(got, "11:10:04:00:22.5 12:10:05:00:23") {
		t.Errorf("feed after a repeat: %s", got)
	}
}

// TestConsoleImportRefused: uploads that must not import anything, and
// what each answers. Nothing is stored by any, the answers name what is
// wrong (the line of a bad row), and no secret reaches the log.
func TestConsoleImportRefused(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	ch, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "Import", Fields: [8]string{"Temperature", "Humidity"}})
	if err != nil {
		t.Fatal(err)
	}
	good := "created_at,field1\n2024-03-01 10:00:00 UTC,1\n"
	junk := make([]byte, 4096)
	rand.Read(junk)
	freshID := func() *string { return strp(rand.Text()) }
	stranger := e.browser() // no session

	for _, tc := range []struct {
		name   string
		do     func() page
		status int
		want   string
	}{
		{"no session", func() page {
			return stranger.send(ch.ID, uploadForm{csrf: strp("x"), formID: freshID(), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 403, "Your session has ended"},
		{"wrong csrf", func() page {
			return b.send(ch.ID, uploadForm{csrf: strp("AAAA" + b.csrf[4:]), formID: freshID(), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 403, "security token is missing or out of date"},
		{"no csrf", func() page {
			return b.send(ch.ID, uploadForm{formID: freshID(), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 403, "security token is missing or out of date"},
		{"csrf after the file", func() page {
			// The token must come before the file: one after it is
			// never read.
			body := &bytes.Buffer{}
			mw := multipart.NewWriter(body)
			w, _ := mw.CreateFormFile("file", "a.csv")
			io.WriteString(w, good)
			mw.WriteField("csrf", b.csrf)
			mw.WriteField("form_id", rand.Text())
			mw.Close()
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/console/channels/%d/import", e.srv.URL, ch.ID), body)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			return b.do(req)
		}, 403, "security token"},
		{"other origin", func() page {
			return b.send(ch.ID, uploadForm{csrf: strp(b.csrf), formID: freshID(), filename: "a.csv", file: strings.NewReader(good)}, false, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
		}, 403, "sent from another site"},
		{"missing channel", func() page {
			return b.send(999, uploadForm{csrf: strp(b.csrf), formID: freshID(), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 404, "Channel 999"},
		{"not multipart", func() page {
			return b.post(fmt.Sprintf("/console/channels/%d/import", ch.ID), map[string][]string{"file": {good}})
		}, 400, "Import CSV form (multipart/form-data"},
		{"no file chosen", func() page {
			return b.send(ch.ID, uploadForm{csrf: strp(b.csrf), formID: freshID(), filename: "", file: strings.NewReader("")}, false)
		}, 400, "Choose a CSV file"},
		{"no form id", func() page {
			return b.send(ch.ID, uploadForm{csrf: strp(b.csrf), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 400, "one-time id"},
		{"long form part", func() page {
			return b.send(ch.ID, uploadForm{csrf: strp(b.csrf), formID: strp(strings.Repeat("i", 5000)), filename: "a.csv", file: strings.NewReader(good)}, false)
		}, 400, "not the Import CSV form"},
		{"malformed row", func() page {
			return b.upload(ch.ID, "created_at,field1\n2024-03-01 10:00:00 UTC,1\n2024-03-01 10:01:00 UTC,2\nyesterday,3\n", false)
		}, 400, "Line 4: "},
		{"disabled field", func() page {
			return b.upload(ch.ID, "created_at,field3\n2024-03-01 10:00:00 UTC,1\n", false)
		}, 400, "field3"},
		{"newest first", func() page {
			return b.upload(ch.ID, "created_at,field1\n2024-03-01 10:01:00 UTC,1\n2024-03-01 10:00:00 UTC,2\n", false)
		}, 400, "Line 3: created_at 2024-03-01 10:00:00 UTC is older than line 2"},
		{"binary junk", func() page { return b.upload(ch.ID, string(junk), false) }, 400, "Line 1: "},
		{"empty file", func() page { return b.upload(ch.ID, "", false) }, 400, "Line 1: the file is empty"},
		{"declared too large", func() page {
			// A body that says it is larger than the limit is refused
			// before it is read, and the connection closed.
			c, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /console/channels/%d/import HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\nOrigin: %s\r\n"+
				"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\n\r\n--xyz\r\n",
				ch.ID, strings.TrimPrefix(e.srv.URL, "http://"), b.cookie().Name, b.cookie().Value, e.srv.URL, httpd.MaxImportUpload+1)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !resp.Close {
				t.Error("the connection stays open for the rest of the body")
			}
			return page{status: resp.StatusCode, body: string(body)}
		}, 413, "larger than the console takes (16 MiB)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.do()
			if p.status != tc.status || !strings.Contains(p.body, tc.want) {
				t.Fatalf("%d, want %d with %q:\n%s", p.status, tc.status, tc.want, p.body)
			}
			if strings.Contains(tc.want, "ine ") && !strings.Contains(p.body, "nothing was stored") {
				t.Errorf("the answer does not say that nothing was stored:\n%s", p.body)
			}
			if got := e.feedOf(ch.ID); got != "" {
				t.Fatalf("stored: %s", got)
			}
		})
	}
	logs := e.logs.String()
	if c := b.cookie(); c == nil || strings.Contains(logs, c.Value) || strings.Contains(logs, b.csrf) || strings.Contains(logs, ch.WriteKey) || strings.Contains(logs, ownerPassword) {
		t.Errorf("a secret in the log:\n%s", logs)
	}
}

// TestConsoleImportTooLarge: a file sent without a length (chunked) that
// goes past the limit is cut off there; the answer says so and what was
// stored before, in whole batches.
func TestConsoleImportTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 16 MiB")
	}
	e := newConsoleEnv(t, false, nil)
	b := e.setup(ownerPassword)
	ch, err := e.svc.CreateChannel(t.Context(), auth.ChannelSpec{Name: "Big", Fields: [8]string{"Level"}})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		// Rows of about 300 bytes until well past the limit.
		status := strings.Repeat("s", 250)
		io.WriteString(pw, "created_at,field1,status\n")
		start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		var row bytes.Buffer
		for i := 0; i < (httpd.MaxImportUpload/280)+2000; i++ {
			row.Reset()
			fmt.Fprintf(&row, "%s,%d,%s\n", start.Add(time.Duration(i)*time.Second).Format("2006-01-02 15:04:05 UTC"), i, status)
			if _, err := pw.Write(row.Bytes()); err != nil {
				return
			}
		}
		pw.Close()
	}()
	p := b.get(fmt.Sprintf("/console/channels/%d", ch.ID))
	id := formIDRE.FindStringSubmatch(p.body)[1]
	p = b.send(ch.ID, uploadForm{csrf: strp(b.csrf), formID: strp(id), filename: "big.csv", file: pr}, true)
	pr.CloseWithError(io.ErrClosedPipe)
	m := regexp.MustCompile(`(\d+) entries before it were stored \(entries 1 to (\d+), through line (\d+)\)`).FindStringSubmatch(p.body)
	if p.status != http.StatusRequestEntityTooLarge || !strings.Contains(p.body, "larger than the console takes (16 MiB)") || m == nil || m[1] != m[2] {
		t.Fatalf("%d:\n%s", p.status, p.body)
	}
	n, _ := strconv.Atoi(m[1])
	if n == 0 {
		t.Errorf("nothing stored before the limit")
	}
	es, err := e.db.Entries(t.Context(), ch.ID, channels.EntryFilter{Limit: 1})
	if err != nil || len(es) != 1 || es[0].ID != uint64(n) {
		t.Errorf("newest entry %v %v, want %d", es, err, n)
	}
}

// TestConsoleImportBodyBudget: an upload holds part of the server's body
// budget (http.max_body_bytes_in_flight) while it runs, so that a flood of
// uploads cannot make the server hold more than the budget: with one
// upload stalled mid-file, a second upload and a large console form are
// refused with 503 and Retry-After before their bodies are read; once the
// first ends, uploads are taken again.
func TestConsoleImportBodyBudget(t *testing.T) {
	m := newMgmt(t, mgmtOptions{maxBodies: 64 << 10, console: true})
	const pw = "a long console password 42"
	if err := m.adm.(interface {
		SetPassword(context.Context, string) error
	}).SetPassword(t.Context(), pw); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(req *http.Request) (int, http.Header, string) {
		t.Helper()
		req.Header.Set("Origin", m.base)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	req, _ := http.NewRequest("POST", m.base+"/console/signin", strings.NewReader("password="+url.QueryEscape(pw)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, _, body := do(req); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", code, body)
	}
	ch := m.createChannel("name=budget&field1=Level")
	req, _ = http.NewRequest("GET", fmt.Sprintf("%s/console/channels/%d", m.base, ch.ID), nil)
	_, _, body := do(req)
	csrf := csrfRE.FindStringSubmatch(body)
	if csrf == nil {
		t.Fatalf("no csrf on the channel page: %s", body)
	}
	upload := func(file io.Reader) *http.Request {
		f := uploadForm{csrf: strp(csrf[1]), formID: strp(rand.Text()), filename: "a.csv", file: file}
		rd, ct := f.body()
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/console/channels/%d/import", m.base, ch.ID), rd)
		req.Header.Set("Content-Type", ct)
		return req
	}

	// The first upload sends a header and one row, then stalls. It starts
	// once the sign-in's body is given back (after its answer): an upload
	// that found it still held would be refused as busy.
	waitBodiesReturned(t, m)
	stalled, pwr := io.Pipe()
	first := make(chan int, 1)
	go func() {
		req := upload(stalled)
		req.Header.Set("Origin", m.base)
		resp, err := c.Do(req)
		if err != nil {
			first <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	io.WriteString(pwr, "created_at,field1\n2024-03-01 10:00:00 UTC,1\n")

	refusals := m.srv.Refusals().Snapshot()["busy"]
	// A large form is refused once the first upload holds the budget (a
	// form, so that nothing is imported before it does).
	largeForm := func() (int, string) {
		form, _ := http.NewRequest("POST", fmt.Sprintf("%s/console/channels/%d", m.base, ch.ID), strings.NewReader("csrf="+url.QueryEscape(csrf[1])+"&name="+strings.Repeat("n", 6000)))
		form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		code, _, body := do(form)
		return code, body
	}
	code, body := largeForm()
	for deadline := time.Now().Add(10 * time.Second); code != http.StatusServiceUnavailable && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		code, body = largeForm()
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("large form while an upload holds the budget: %d %s", code, body)
	}
	code, hdr, body := do(upload(strings.NewReader("created_at,field1\n2024-03-01 11:00:00 UTC,2\n")))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "as many uploads") {
		t.Fatalf("second upload while the first holds the budget: %d %v %s", code, hdr, body)
	}
	if n := m.srv.Refusals().Snapshot()["busy"] - refusals; n < 2 {
		t.Errorf("%d refusals counted as busy, want at least 2", n)
	}

	// The first upload ends: it is stored, and uploads are taken again.
	io.WriteString(pwr, "2024-03-01 10:01:00 UTC,1.5\n")
	pwr.Close()
	if code := <-first; code != 200 {
		t.Fatalf("stalled upload, finished: %d", code)
	}
	if code, _, body := do(upload(strings.NewReader("created_at,field1\n2024-03-01 11:00:00 UTC,2\n"))); code != 200 || !strings.Contains(body, "Imported 1 entry (numbered on after the channel&#39;s last entry): entries 3 to 3") {
		t.Errorf("upload after the budget came back: %d %s", code, body)
	}
}

// FuzzConsoleImport uploads arbitrary files, and arbitrary multipart
// bodies, with the owner's session and token, to the import form: each
// answer is a page (no panic, no 5xx), and a file is stored only when the
// answer says it was imported, with as many entries as it says.
func FuzzConsoleImport(f *testing.F) {
	f.Add(false, "created_at,entry_id,field1\n2024-03-01 10:00:00 UTC,5,20.5\n2024-03-01 10:01:00 UTC,7,21\n")
	f.Add(false, "\ufeffcreated_at,field1,status\r\n2024-03-01T10:00:00+01:00,1,\"a, \"\"b\"\"\"\r\n")
	f.Add(false, "created_at,field1\nyesterday,1\n")
	f.Add(false, "created_at,field9\n")
	f.Add(false, "\x00\xff\xfe,\"\n")
	f.Add(true, "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\ncreated_at,field1\n2024-01-01 00:00:00 UTC,1\r\n--B--\r\n")
	f.Add(true, "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx")
	f.Add(true, "--B--")
	e := newConsoleEnv(f, false, nil)
	b := e.setup(ownerPassword)
	ch, err := e.svc.CreateChannel(f.Context(), auth.ChannelSpec{Name: "Fuzz", Fields: [8]string{"t", "u"}})
	if err != nil {
		f.Fatal(err)
	}
	entries := func(t *testing.T) int {
		c, err := e.db.EntryCount(t.Context(), ch.ID)
		if err != nil {
			t.Fatal(err)
		}
		return int(c)
	}
	imported := regexp.MustCompile(`Imported (\d+) entr(y|ies)`)
	f.Fuzz(func(t *testing.T, raw bool, content string) {
		e.t = t // the helpers report to this input's test (inputs run one at a time)
		before := entries(t)
		var p page
		if raw {
			// The whole body after the token and the form id.
			pre := "--B\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b.csrf + "\r\n" +
				"--B\r\nContent-Disposition: form-data; name=\"form_id\"\r\n\r\n" + rand.Text() + "\r\n"
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/console/channels/%d/import", e.srv.URL, ch.ID), strings.NewReader(pre+content))
			req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
			p = b.do(req)
		} else {
			p = b.send(ch.ID, uploadForm{csrf: strp(b.csrf), formID: strp(rand.Text()), filename: "f.csv", file: strings.NewReader(content)}, false)
		}
		if p.status >= 500 || p.status == 0 {
			t.Fatalf("%q: %d\n%s", content, p.status, p.body)
		}
		got := entries(t) - before
		if m := imported.FindStringSubmatch(p.body); p.status == 200 && m != nil {
			if n, _ := strconv.Atoi(m[1]); n != got {
				t.Fatalf("%q: the page says %s entries, %d stored", content, m[1], got)
			}
		} else if got != 0 && !strings.Contains(p.body, "before it were stored") {
			t.Fatalf("%q: %d, %d entries stored without a word:\n%s", content, p.status, got, p.body)
		}
	})
}
