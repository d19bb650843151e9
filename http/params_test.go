package httpd

import (
	"math"
	"net/url"
	"slices"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/feedmq/feedmq/channels"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestParseTime(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		in   string
		loc  *time.Location
		want time.Time
	}{
		{"2024-12-31 23:59:59", nil, utc("2024-12-31T23:59:59Z")},
		{"2024-12-31T23:59:59Z", nil, utc("2024-12-31T23:59:59Z")},
		{"2024-12-31t23:59:59z", nil, utc("2024-12-31T23:59:59Z")},
		{"2024-12-31", nil, utc("2024-12-31T00:00:00Z")},
		{"2024-12-31 23:59", nil, utc("2024-12-31T23:59:00Z")},
		{"2024-12-31 23:59:59.25", nil, utc("2024-12-31T23:59:59.25Z")},
		{"2024-12-31 23:59:59.1234567891", nil, utc("2024-12-31T23:59:59.123456789Z")},
		{"2024-12-31 23:59:59+01:00", nil, utc("2024-12-31T22:59:59Z")},
		{"2024-12-31 23:59:59 01:00", nil, utc("2024-12-31T22:59:59Z")}, // unescaped +
		{"2024-12-31 23:59:59-0530", nil, utc("2025-01-01T05:29:59Z")},
		{"2024-12-31 23:59:59-05", nil, utc("2025-01-01T04:59:59Z")},
		{"2024-12-31 23:59:59 UTC", berlin, utc("2024-12-31T23:59:59Z")},
		{"2024-12-31 23:59:59", berlin, utc("2024-12-31T22:59:59Z")},
		{"2024-07-31 23:59:59", berlin, utc("2024-07-31T21:59:59Z")},
		{"2024-07-31 23:59:59Z", berlin, utc("2024-07-31T23:59:59Z")},
		{"2024-02-29", nil, utc("2024-02-29T00:00:00Z")},
	} {
		got, err := parseTime(c.in, c.loc)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"", "2024", "2024-1-01", "2024-12-31x", "2024-12-31 2", "2024-12-31 23", "2024-12-31 23:5",
		"2024-12-31 23:59:5", "2024-12-31 24:00:00", "2024-12-31 23:60:00", "2024-12-31 23:59:60",
		"2023-02-29", "2024-00-10", "2024-13-10", "2024-12-00", "2024-12-32", "2024-12-31 23:59:59+1",
		"2024-12-31 23:59:59+24:00", "2024-12-31 23:59:59+01:60", "2024-12-31 23:59:59 CET",
		"2024-12-31 23:59:59.", "2024-12-31 23:59:59.x", "+024-12-31", "2024-12-31 23:59:59Z ",
		"２０２４-12-31", "2024-12-31Z", "2024-12-31+01:00", "2024-12-31 23:59:59 01",
	} {
		if got, err := parseTime(in, nil); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseRoute(t *testing.T) {
	for path, want := range map[string]route{
		"/channels/7/feeds.json":         {kind: routeFeeds, channel: 7, format: "json"},
		"/channels/7/feeds.csv":          {kind: routeFeeds, channel: 7, format: "csv"},
		"/channels/7/fields/8.json":      {kind: routeField, channel: 7, field: 8, format: "json"},
		"/channels/7/feeds/last.json":    {kind: routeLast, channel: 7, format: "json"},
		"/channels/7/fields/1/last.txt":  {kind: routeFieldLast, channel: 7, field: 1, format: "txt"},
		"/channels/7/feeds/entry/42.csv": {kind: routeEntry, channel: 7, entry: 42, format: "csv"},
		"/update":                        {kind: routeUpdate},
		"/update.json":                   {kind: routeUpdate, format: "json"},
		"/healthz":                       {kind: routeHealth},
	} {
		got, ok := parseRoute(path)
		if !ok || got != want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v", path, got, ok, want)
		}
	}
	// A channel ID has one spelling (channels.ParseID).
	for _, path := range []string{"/channels/007/feeds/entry/1.json", "/channels/0/feeds.json", "/channels/+7/feeds.json"} {
		if got, ok := parseRoute(path); ok {
			t.Errorf("parseRoute(%q) = %+v, want no route", path, got)
		}
	}
}

func TestParseReadParams_Defaults(t *testing.T) {
	var z zoneCache
	p, err := parseReadParams(url.Values{}, testNow, &z)
	// ThingSpeak's default: the newest 100 of the last 24 hours, up to now.
	if err != nil || p.limit != DefaultResults || !p.start.Equal(testNow.Add(-24*time.Hour)) || !p.end.Equal(testNow) || p.loc != nil {
		t.Fatalf("defaults: %+v, %v", p, err)
	}
	for _, c := range []struct {
		query string
		limit int
		start time.Time
	}{
		{"results=5", 5, time.Time{}},
		{"start=2020-01-01", MaxResults, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"end=2026-01-01", MaxResults, testNow.Add(-24 * time.Hour)}, // end alone keeps the day
		{"minutes=90", DefaultResults, testNow.Add(-90 * time.Minute)},
		{"minutes=99999999", DefaultResults, testNow.Add(-30 * 24 * time.Hour)},
		{"minutes=99999999&results=10", 10, testNow.Add(-99999999 * time.Minute)},
		{"days=40", MaxResults, testNow.Add(-40 * 24 * time.Hour)},
	} {
		q, _ := url.ParseQuery(c.query)
		p, err := parseReadParams(q, testNow, &z)
		if err != nil || p.limit != c.limit || !p.start.Equal(c.start) {
			t.Errorf("%s: limit %d start %v (%v), want %d %v", c.query, p.limit, p.start, err, c.limit, c.start)
		}
	}
	p, err = parseReadParams(url.Values{"days": {"2"}}, testNow, &z)
	if err != nil || p.limit != MaxResults || !p.start.Equal(testNow.Add(-48*time.Hour)) {
		t.Fatalf("days=2: %+v, %v", p, err)
	}
	p, err = parseReadParams(url.Values{"days": {"99999999999999999999999"}}, testNow, &z)
	if err != nil || !p.start.Equal(testNow.Add(-maxDays*24*time.Hour)) {
		t.Fatalf("huge days: %+v, %v", p, err)
	}
	p, err = parseReadParams(url.Values{"end": {"2026-01-01"}, "results": {"5"}}, testNow, &z)
	if err != nil || p.limit != 5 || !p.end.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("end: %+v, %v", p, err)
	}
	p, err = parseReadParams(url.Values{"offset": {"-3.75"}}, testNow, &z)
	if _, off := testNow.In(p.loc).Zone(); err != nil || off != -(3*3600+45*60) {
		t.Fatalf("offset=-3.75: %v, %v", off, err)
	}
}

// FuzzQueryParams checks that no query string makes the read parameters
// panic or escape their bounds, and that accepted times format and parse
// back.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"", "results=10", "results=8001", "results=-1", "days=3&minutes=5", "minutes=99999999999999",
		"start=2024-12-31%2023:59:59&end=2025-01-01T00:00:00Z", "start=2024-12-31+23:59:59+01:00",
		"start=2024-02-29&timezone=America/New_York", "timezone=Europe/Berlin&offset=3", "offset=-12.5",
		"offset=14.0000001", "timezone=Local", "timezone=..%2Fetc", "status=true&location=1&callback=x.y",
		"start=2024-12-31 23:59:59.999999999999-23:59", "end=9999-12-31T23:59:59+23:59", "end=0000-01-01T00:00:00-23:59",
		"average=60&round=2", "timescale=daily&timezone=Asia/Kolkata", "sum=10&median=1440&average=15", "median=7",
		"min=-2.5&max=1e3", "min=.5", "max=1e999", "round=30", "round=31", "average=", "timescale=0010",
	} {
		f.Add(s)
	}
	var zones zoneCache
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseReadParams(q, testNow, &zones)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("error %T %v is not an *apiError", err, err)
			}
			return
		}
		if p.limit < 0 || p.limit > MaxResults {
			t.Fatalf("limit %d out of range", p.limit)
		}
		rows := p.rows
		if rows.Round < -1 || rows.Round > channels.MaxRound {
			t.Fatalf("round %d out of range", rows.Round)
		}
		if rows.Kind != channels.NoAggregate {
			if b := rows.Bucket; !b.Daily && !slices.Contains(channels.BucketMinutes[:], b.Minutes) {
				t.Fatalf("bucket %+v", b)
			}
			if rows.MaxRows != MaxBucketRows {
				t.Fatalf("MaxRows %d", rows.MaxRows)
			}
		}
		for _, x := range []float64{rows.Filter.Min, rows.Filter.Max} {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("filter bound %v", x)
			}
		}
		if p.callback != "" && !validCallback(p.callback) {
			t.Fatalf("callback %q accepted", p.callback)
		}
		if p.loc != nil {
			if _, off := testNow.In(p.loc).Zone(); off < -24*3600 || off > 24*3600 {
				t.Fatalf("zone offset %d", off)
			}
		}
		for _, bound := range []time.Time{p.start, p.end} {
			if bound.IsZero() {
				continue
			}
			// A bound written back in RFC 3339 parses to the same instant.
			bound = bound.UTC()
			if y := bound.Year(); y < 0 || y > 9999 {
				continue // RFC 3339 cannot write it
			}
			s := bound.Format("2006-01-02T15:04:05.999999999Z07:00")
			back, err := parseTime(s, nil)
			if err != nil || !back.Equal(bound) {
				t.Fatalf("bound %v formats as %q, parses back as %v, %v", bound, s, back, err)
			}
		}
	})
}

// TestParseShape checks the aggregate, round and min/max parameters and
// the precedence of the bucket parameters.
func TestParseShape(t *testing.T) {
	kolkata := time.FixedZone("", 5*3600+1800)
	cases := []struct {
		query string
		want  channels.RowOptions
	}{
		{"", channels.RowOptions{Round: -1}},
		{"average=60", channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 60}, Round: -1, MaxRows: MaxBucketRows}},
		{"median=1440&sum=10&timescale=15", channels.RowOptions{Kind: channels.Timescale, Bucket: channels.Bucket{Minutes: 15}, Round: -1, MaxRows: MaxBucketRows}},
		{"median=20&average=30", channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 30}, Round: -1, MaxRows: MaxBucketRows}},
		{"sum=daily&offset=5.5", channels.RowOptions{Kind: channels.Sum, Bucket: channels.Bucket{Daily: true, Loc: kolkata}, Round: -1, MaxRows: MaxBucketRows}},
		{"average=&round=", channels.RowOptions{Round: -1}}, // empty is absent
		{"round=0", channels.RowOptions{Round: 0}},
		{"round=30&min=-2.5&max=.5", channels.RowOptions{Round: 30, Filter: channels.ValueFilter{Min: -2.5, HasMin: true, Max: 0.5, HasMax: true}}},
	}
	var zones zoneCache
	for _, c := range cases {
		q, _ := url.ParseQuery(c.query)
		p, err := parseReadParams(q, testNow, &zones)
		if err != nil {
			t.Errorf("%s: %v", c.query, err)
			continue
		}
		got, want := p.rows, c.want
		if (got.Bucket.Loc == nil) != (want.Bucket.Loc == nil) {
			t.Errorf("%s: zone %v, want %v", c.query, got.Bucket.Loc, want.Bucket.Loc)
		}
		if got.Bucket.Loc != nil {
			_, o1 := testNow.In(got.Bucket.Loc).Zone()
			_, o2 := testNow.In(want.Bucket.Loc).Zone()
			if o1 != o2 {
				t.Errorf("%s: zone offset %d, want %d", c.query, o1, o2)
			}
		}
		got.Bucket.Loc, want.Bucket.Loc = nil, nil
		if got.Kind != want.Kind || got.Bucket != want.Bucket || got.Round != want.Round || got.Filter != want.Filter || got.MaxRows != want.MaxRows {
			t.Errorf("%s: %+v, want %+v", c.query, got, want)
		}
	}
}
