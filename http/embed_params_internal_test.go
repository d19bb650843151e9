package httpd

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseEmbedOptions(t *testing.T) {
	for _, tc := range []struct {
		kind, query string
		check       func(o embedOptions) bool
		err         string // part of the message; "" for none
	}{
		// ThingSpeak's defaults.
		{kind: "chart", query: "", check: func(o embedOptions) bool {
			return o.Width == 450 && o.Height == 250 && o.Color == "#d62020" && o.BgColor == "#ffffff" &&
				o.Type == "line" && !o.Dynamic && o.Title == "" && len(o.Feed) == 0
		}},
		{kind: "numeric", query: "", check: func(o embedOptions) bool {
			return o.Dynamic && o.Decimals == -1 && o.Color == "" && o.Width == 0
		}},
		{kind: "gauge", query: "", check: func(o embedOptions) bool { return o.Min == 0 && o.Max == 100 && o.Dynamic }},
		{kind: "chart", query: "title=Temp+%C2%B0C&xaxis=Time&yaxis=%C2%B0C&type=Spline&dynamic=true&width=auto&height=300",
			check: func(o embedOptions) bool {
				return o.Title == "Temp °C" && o.XAxis == "Time" && o.YAxis == "°C" && o.Type == "spline" &&
					o.Dynamic && o.Width == 0 && o.Height == 300
			}},
		// Colors: with or without #, short or long, or a name.
		{kind: "chart", query: "color=00AAFF&bgcolor=%23eee", check: func(o embedOptions) bool { return o.Color == "#00aaff" && o.BgColor == "#eee" }},
		{kind: "chart", query: "color=Red&bgcolor=transparent", check: func(o embedOptions) bool { return o.Color == "red" && o.BgColor == "transparent" }},
		{kind: "chart", query: "color=%23ff0000%3Bbackground:url(x)", err: "color must be a color"},
		{kind: "chart", query: "bgcolor=red%22%3E%3Cscript%3E", err: "bgcolor must be a color"},
		{kind: "chart", query: "color=%2312345", err: "color must be"},
		{kind: "chart", query: "color=expression(alert(1))", err: "color must be"},
		{kind: "chart", query: "step=true", check: func(o embedOptions) bool { return o.Type == "step" }},
		{kind: "chart", query: "type=area", err: "type must be line, bar, column, spline or step"},
		{kind: "chart", query: "type=bar", check: func(o embedOptions) bool { return o.Type == "bar" }},
		{kind: "chart", query: "dynamic=yes", err: "dynamic must be true or false"},
		{kind: "numeric", query: "dynamic=false", check: func(o embedOptions) bool { return !o.Dynamic }},
		// Sizes are bounded.
		{kind: "chart", query: "width=49", err: "width must be auto or a number of pixels from 50 to 4000"},
		{kind: "chart", query: "height=4001", err: "height must be"},
		{kind: "chart", query: "width=1e3", err: "width must be"},
		{kind: "chart", query: "width=4000&height=50", check: func(o embedOptions) bool { return o.Width == 4000 && o.Height == 50 }},
		// Text is bounded and has no control characters.
		{kind: "chart", query: "title=" + strings.Repeat("a", 200), check: func(o embedOptions) bool { return len(o.Title) == 200 }},
		{kind: "chart", query: "title=" + strings.Repeat("a", 201), err: "title is longer than 200 bytes"},
		{kind: "chart", query: "yaxis=a%0Ab", err: "yaxis contains a control character"},
		{kind: "chart", query: "xaxis=%FF", err: "xaxis is not valid UTF-8"},
		{kind: "numeric", query: "units=" + strings.Repeat("W", 33), err: "units is longer than 32 bytes"},
		{kind: "numeric", query: "decimals=2&units=kWh", check: func(o embedOptions) bool { return o.Decimals == 2 && o.Units == "kWh" }},
		{kind: "numeric", query: "decimals=11", err: "decimals must be a number from 0 to 10"},
		{kind: "numeric", query: "decimals=-1", err: "decimals must be"},
		// Gauge range.
		{kind: "gauge", query: "min=-20.5&max=45", check: func(o embedOptions) bool { return o.Min == -20.5 && o.Max == 45 }},
		{kind: "gauge", query: "min=5&max=5", err: "min must be less than max"},
		{kind: "gauge", query: "max=NaN", err: "max must be a number"},
		{kind: "gauge", query: "max=1e16", err: "max must be a number"},
		{kind: "gauge", query: "min=Inf", err: "min must be a number"},
		// A chart's min and max leave points out; yaxismin and yaxismax fix the axis.
		{kind: "chart", query: "min=-5&max=1.50&yaxismin=-10&yaxismax=1e2", check: func(o embedOptions) bool {
			return o.FilterMin == "-5" && o.FilterMax == "1.5" && o.YAxisMin == "-10" && o.YAxisMax == "100"
		}},
		{kind: "chart", query: "max=3", check: func(o embedOptions) bool { return o.FilterMin == "" && o.FilterMax == "3" }},
		{kind: "chart", query: "min=3&max=2", err: "min must not be more than max"},
		{kind: "chart", query: "yaxismin=3&yaxismax=3", err: "yaxismin must be less than yaxismax"},
		{kind: "chart", query: "yaxismax=1)%3Balert(1", err: "yaxismax must be a number"},
		{kind: "chart", query: "min=0x10", err: "min must be a number"},
		// min and max mean nothing to a numeric widget.
		{kind: "numeric", query: "min=x", check: func(o embedOptions) bool { return true }},
		// Read parameters pass on to the feed, in shape only.
		{kind: "chart", query: "results=50&days=1.5&average=60&round=2&start=2026-01-01+00:00:00&end=2026-01-02T00:00:00Z&timescale=daily&foo=bar",
			check: func(o embedOptions) bool {
				return o.Feed.Encode() == "average=60&days=1.5&end=2026-01-02T00%3A00%3A00Z&results=50&round=2&start=2026-01-01+00%3A00%3A00&timescale=daily"
			}},
		{kind: "chart", query: "results=99999999999999999999", check: func(o embedOptions) bool { return o.Feed.Get("results") == "8000" }},
		{kind: "chart", query: "results=-1", err: "results is malformed"},
		{kind: "chart", query: "average=60%26api_key%3DX", err: "average is malformed"},
		{kind: "chart", query: "round=11", err: "round is malformed"},
		{kind: "chart", query: "days=-1", err: "days is malformed"},
		{kind: "chart", query: "start=2026-01-01%3Cscript%3E", err: "start is malformed"},
		{kind: "chart", query: "sum=123456", err: "sum is malformed"},
		// A width the read API refuses is refused here, not in the
		// chart after the page has loaded.
		{kind: "chart", query: "average=7", err: "average is malformed"},
		{kind: "numeric", query: "average=x", check: func(o embedOptions) bool { return len(o.Feed) == 0 }},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		o, err := parseEmbedOptions(tc.kind, q)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: error %v, want %q", tc.kind, tc.query, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s %q: %v", tc.kind, tc.query, err)
		case !tc.check(o):
			t.Errorf("%s %q: got %+v", tc.kind, tc.query, o)
		}
	}
}

// FuzzEmbedOptions checks that options never fail other than with a 400,
// and that what they let through is safe to put on the page: colors only
// hex or a keyword, texts bounded and without control characters, feed
// parameters without characters that could end or extend a URL query.
func FuzzEmbedOptions(f *testing.F) {
	for _, s := range []string{"", "title=x&color=f00&type=bar&width=auto", "color=%22%3E", "results=5&average=daily&start=2026-01-01",
		"min=-1&max=1e15&decimals=3&units=%C2%B0C", "step=true&dynamic=false", "title=%00", "days=1e309"} {
		f.Add("chart", s)
		f.Add("gauge", s)
	}
	f.Fuzz(func(t *testing.T, kind, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		o, err := parseEmbedOptions(kind, q)
		if err != nil {
			if e, ok := err.(*apiError); !ok || e.status != 400 {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		for _, c := range []string{o.Color, o.BgColor} {
			if c != "" && !namedColors[c] && !(c[0] == '#' && (len(c) == 4 || len(c) == 7) && isHex(c[1:])) {
				t.Fatalf("color %q let through", c)
			}
		}
		for _, s := range []string{o.Title, o.XAxis, o.YAxis, o.Units} {
			if len(s) > maxEmbedText || !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\n\r\t\x7f") {
				t.Fatalf("text %q let through", s)
			}
		}
		if (o.Width != 0 && (o.Width < minEmbedSize || o.Width > maxEmbedSize)) || (o.Height != 0 && (o.Height < minEmbedSize || o.Height > maxEmbedSize)) {
			t.Fatalf("size %dx%d let through", o.Width, o.Height)
		}
		if !(o.Min < o.Max) {
			t.Fatalf("gauge range %v..%v", o.Min, o.Max)
		}
		for _, v := range []string{o.FilterMin, o.FilterMax, o.YAxisMin, o.YAxisMax} {
			if f, err := strconv.ParseFloat(v, 64); v != "" && (err != nil || strconv.FormatFloat(f, 'g', -1, 64) != v) {
				t.Fatalf("bound %q let through", v)
			}
		}
		for k, vs := range o.Feed {
			for _, v := range vs {
				if strings.ContainsAny(v, "&#?=<>\"'%/\\") || len(v) > maxTimeParam {
					t.Fatalf("feed parameter %s=%q let through", k, v)
				}
			}
		}
		// The page renders, whatever the options.
		var b bytes.Buffer
		if err := embedPage.Execute(&b, &embedData{Kind: kind, Field: 1, O: o, Title: o.Title, XAxis: o.XAxis, YAxis: o.YAxis, Feed: "/x" + query(o.Feed)}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "<script>") {
			t.Fatalf("inline script on the page: %s", b.String())
		}
	})
}
