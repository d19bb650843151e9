package httpd

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/feedmq/feedmq/channels"
)

// Embed option limits. Option values come from whoever wrote the embedding
// page (or a link sent to a victim), so every one is checked here and only
// checked values reach the page, as HTML-escaped data attributes that the
// script reads as text.
const (
	maxEmbedText  = 200  // title, xaxis, yaxis, in bytes
	maxEmbedUnits = 32   // widget units, in bytes
	minEmbedSize  = 50   // width and height, in pixels
	maxEmbedSize  = 4000 // width and height, in pixels
	maxDecimals   = 10
	maxRound      = 10
	maxGaugeAbs   = 1e15 // gauge min and max
	maxTimeParam  = 40   // start and end, in bytes
	maxDaysParam  = 16   // days and minutes, in bytes
)

// Chart defaults, as ThingSpeak draws them: a 450×250 frame, line type,
// the red #d62020 series on white.
const (
	defaultChartWidth  = 450
	defaultChartHeight = 250
	defaultChartColor  = "#d62020"
	defaultChartBg     = "#ffffff"
)

// chartTypes are the series types a chart draws. ThingSpeak's
// step=true is the same as type=step.
var chartTypes = []string{"line", "bar", "column", "spline", "step"}

// namedColors are the CSS color keywords accepted besides hex.
var namedColors = map[string]bool{
	"black": true, "silver": true, "gray": true, "grey": true, "white": true, "maroon": true,
	"red": true, "purple": true, "fuchsia": true, "green": true, "lime": true, "olive": true,
	"yellow": true, "navy": true, "blue": true, "teal": true, "aqua": true, "orange": true,
	"transparent": true, "brown": true, "pink": true, "gold": true, "cyan": true, "magenta": true,
	"darkblue": true, "darkgreen": true, "darkred": true, "lightgray": true, "lightgrey": true,
	"darkgray": true, "darkgrey": true, "steelblue": true, "tomato": true, "orchid": true,
}

// embedOptions are the checked options of a chart or widget page.
type embedOptions struct {
	Title, XAxis, YAxis string // "" means the default (channel name, "Date", field label)
	Units               string
	Color, BgColor      string // "#rgb", "#rrggbb" or a CSS keyword
	Type                string // one of chartTypes
	Dynamic             bool
	Width, Height       int     // pixels; 0 means fill the frame ("auto")
	Decimals            int     // -1: the value as written
	Min, Max            float64 // the gauge's range
	// A chart's optional bounds, as numbers in their shortest form or ""
	// for none: points outside FilterMin..FilterMax are left out (its min
	// and max options), and YAxisMin..YAxisMax fix the value axis.
	FilterMin, FilterMax, YAxisMin, YAxisMax string
	// Feed holds the read parameters the page passes on to the feed it
	// reads (results, days, minutes, start, end, average, median, sum,
	// timescale, round); the read API checks their meaning.
	Feed url.Values
}

// feedParams are the read parameters a chart passes on to its feed read,
// as ThingSpeak's chart page does.
var feedParams = []string{"results", "days", "minutes", "start", "end", "timescale", "average", "median", "sum", "round"}

// parseEmbedOptions checks the options of a chart ("chart"), numeric
// ("numeric") or gauge ("gauge") page. The error names the option.
func parseEmbedOptions(kind string, q url.Values) (embedOptions, error) {
	o := embedOptions{Type: "line", Decimals: -1, Max: 100, Feed: url.Values{}}
	if kind == "chart" {
		o.Width, o.Height = defaultChartWidth, defaultChartHeight
		o.Color, o.BgColor = defaultChartColor, defaultChartBg
	} else {
		o.Dynamic = true // a widget shows the current value
	}
	var err error
	for _, t := range []struct {
		name string
		dst  *string
		max  int
	}{{"title", &o.Title, maxEmbedText}, {"xaxis", &o.XAxis, maxEmbedText}, {"yaxis", &o.YAxis, maxEmbedText}, {"units", &o.Units, maxEmbedUnits}} {
		if *t.dst, err = embedText(q, t.name, t.max); err != nil {
			return o, err
		}
	}
	for _, c := range []struct {
		name string
		dst  *string
	}{{"color", &o.Color}, {"bgcolor", &o.BgColor}} {
		if v, ok := single(q, c.name); ok && v != "" {
			if *c.dst, err = parseColor(c.name, v); err != nil {
				return o, err
			}
		}
	}
	if v, ok := single(q, "type"); ok && v != "" {
		v = strings.ToLower(v)
		found := false
		for _, t := range chartTypes {
			found = found || t == v
		}
		if !found {
			return o, badRequest("type must be line, bar, column, spline or step.")
		}
		o.Type = v
	}
	if step, err := parseBool(q, "step"); err != nil {
		return o, err
	} else if step {
		o.Type = "step"
	}
	if _, ok := q["dynamic"]; ok {
		if o.Dynamic, err = parseBool(q, "dynamic"); err != nil {
			return o, err
		}
	}
	for _, s := range []struct {
		name string
		dst  *int
	}{{"width", &o.Width}, {"height", &o.Height}} {
		v, ok := single(q, s.name)
		if !ok || v == "" {
			continue
		}
		if v == "auto" {
			*s.dst = 0
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < minEmbedSize || n > maxEmbedSize {
			return o, badRequest(s.name + " must be auto or a number of pixels from " + strconv.Itoa(minEmbedSize) + " to " + strconv.Itoa(maxEmbedSize) + ".")
		}
		*s.dst = n
	}
	if v, ok := single(q, "decimals"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxDecimals {
			return o, badRequest("decimals must be a number from 0 to " + strconv.Itoa(maxDecimals) + ".")
		}
		o.Decimals = n
	}
	if kind == "gauge" {
		for _, m := range []struct {
			name string
			dst  *float64
		}{{"min", &o.Min}, {"max", &o.Max}} {
			v, ok := single(q, m.name)
			if !ok || v == "" {
				continue
			}
			if *m.dst, err = parseBound(m.name, v); err != nil {
				return o, err
			}
		}
		if !(o.Min < o.Max) {
			return o, badRequest("min must be less than max.")
		}
	}
	if kind == "chart" {
		var lim [4]float64
		for i, m := range []struct {
			name string
			dst  *string
		}{{"min", &o.FilterMin}, {"max", &o.FilterMax}, {"yaxismin", &o.YAxisMin}, {"yaxismax", &o.YAxisMax}} {
			v, ok := single(q, m.name)
			if !ok || v == "" {
				continue
			}
			if lim[i], err = parseBound(m.name, v); err != nil {
				return o, err
			}
			*m.dst = strconv.FormatFloat(lim[i], 'g', -1, 64)
		}
		if o.FilterMin != "" && o.FilterMax != "" && lim[0] > lim[1] {
			return o, badRequest("min must not be more than max.")
		}
		if o.YAxisMin != "" && o.YAxisMax != "" && lim[2] >= lim[3] {
			return o, badRequest("yaxismin must be less than yaxismax.")
		}
		if err := parseFeedParams(q, o.Feed); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseBound parses a gauge or axis bound: a finite number of at most
// 1e15 in size.
func parseBound(name, v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxGaugeAbs || len(v) > 32 {
		return 0, badRequest(name + " must be a number between -1e15 and 1e15.")
	}
	return f, nil
}

// single returns the one value of name. A repeated option is refused by
// the callers through the value check failing, so take the first only
// when it is the only one.
func single(q url.Values, name string) (string, bool) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// embedText checks a text option: valid UTF-8, no control characters, at
// most max bytes.
func embedText(q url.Values, name string, max int) (string, error) {
	v, _ := single(q, name)
	if len(v) > max {
		return "", badRequest(name + " is longer than " + strconv.Itoa(max) + " bytes.")
	}
	if !utf8.ValidString(v) {
		return "", badRequest(name + " is not valid UTF-8.")
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", badRequest(name + " contains a control character.")
		}
	}
	return v, nil
}

// parseColor accepts #rgb, #rrggbb, the same without # (ThingSpeak adds
// it), or a CSS color keyword, and returns it with # or in lower case.
func parseColor(name, v string) (string, error) {
	h := strings.TrimPrefix(v, "#")
	if (len(h) == 3 || len(h) == 6) && isHex(h) {
		return "#" + strings.ToLower(h), nil
	}
	if l := strings.ToLower(v); namedColors[l] {
		return l, nil
	}
	return "", badRequest(name + " must be a color: #rgb, #rrggbb or a color name such as red.")
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// parseFeedParams checks the shape of the read parameters a chart passes
// on and copies them to feed. Their meaning (ranges, which combinations)
// is the read API's to check: the chart shows its refusal.
func parseFeedParams(q url.Values, feed url.Values) error {
	for _, name := range feedParams {
		v, ok := single(q, name)
		if !ok || v == "" {
			continue
		}
		var good bool
		switch name {
		case "results":
			n, err := parseCount(v, MaxResults)
			good, v = err == nil, strconv.Itoa(n)
		case "round":
			n, err := strconv.Atoi(v)
			good = err == nil && isDigits(v) && n <= maxRound && len(v) <= 2
		case "days", "minutes":
			// A plain decimal: no sign, exponent or hex.
			whole, frac, dot := strings.Cut(v, ".")
			good = len(v) <= maxDaysParam && whole != "" && isDigits(whole) && (!dot || frac != "" && isDigits(frac))
		case "start", "end":
			good = len(v) <= maxTimeParam && strings.IndexFunc(v, func(r rune) bool {
				return !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || strings.ContainsRune(" :-+.", r))
			}) < 0
		default: // timescale, average, median, sum: minutes or "daily"
			_, good = channels.ParseBucket(v)
		}
		if !good {
			return badRequest(name + " is malformed: see the read API's parameters.")
		}
		feed.Set(name, v)
	}
	return nil
}
