package httpd_test

import (
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

// Values that a spreadsheet would evaluate reach CSV downloads quoted, over
// a real HTTP connection: each is written with /update and read back with
// feeds.csv and fields/<N>.csv. Decimal numbers stay as they are.
func TestCSVFormulaCells(t *testing.T) {
	e := newEnv(t, channels.Limits{})
	ch := e.channel("Sheet", "", false, map[int]string{1: "v", 2: "n"})
	srv := httptest.NewServer(e.h)
	defer srv.Close()

	cases := []struct{ in, want string }{
		{`-2+3+cmd|' /C calc'!A0`, `'-2+3+cmd|' /C calc'!A0`},
		{`=HYPERLINK("http://example.com/x","click")`, `'=HYPERLINK("http://example.com/x","click")`},
		{"@SUM(1)", "'@SUM(1)"},
		{"+1+1", "'+1+1"},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{"-2.5", "-2.5"},
		{"+3", "+3"},
		{"-", "'-"},
		{"21.5", "21.5"},
		{"a=b", "a=b"},
	}
	for _, c := range cases {
		form := url.Values{"api_key": {ch.WriteKey}, "field1": {c.in}, "field2": {"-2.5"}}
		resp, err := http.PostForm(srv.URL+"/update", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) == "0" {
			t.Fatalf("update %q: %d %s", c.in, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"feeds.csv", "fields/1.csv"} {
		resp, err := http.Get(srv.URL + "/channels/1/" + path + "?results=8000&api_key=" + ch.ReadKey)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(rows) != len(cases)+1 {
			t.Fatalf("%s: %d rows, want %d", path, len(rows), len(cases)+1)
		}
		for i, c := range cases {
			row := rows[i+1]
			// The CSV reader turns \r\n and a lone \r inside quotes into \n.
			got := strings.ReplaceAll(row[2], "\n", "\r")
			if got != c.want {
				t.Errorf("%s: %q reads back as %q, want %q", path, c.in, row[2], c.want)
			}
			if path == "feeds.csv" && row[3] != "-2.5" {
				t.Errorf("%s: field2 = %q, want -2.5", path, row[3])
			}
		}
	}
}
