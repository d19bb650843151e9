package channels_test

import (
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

func TestParseBucket(t *testing.T) {
	for _, s := range []string{"10", "15", "20", "30", "60", "240", "720", "1440", "0060"} {
		b, ok := channels.ParseBucket(s)
		if !ok || b.Daily || b.Minutes == 0 {
			t.Errorf("ParseBucket(%q) = %+v, %v", s, b, ok)
		}
	}
	if b, ok := channels.ParseBucket("daily"); !ok || !b.Daily {
		t.Errorf("daily: %+v %v", b, ok)
	}
	for _, s := range []string{"", "0", "5", "61", "-60", "+60", "60.0", "60 ", "Daily", "1e1", "999999999999", "١٠"} {
		if b, ok := channels.ParseBucket(s); ok {
			t.Errorf("ParseBucket(%q) = %+v, want refused", s, b)
		}
	}
}

func TestBucketStart(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	india := time.FixedZone("", 5*3600+1800)
	utc := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	cases := []struct {
		b        channels.Bucket
		t, start string
		next     string
	}{
		{channels.Bucket{Minutes: 60}, "2026-11-22T10:59:59Z", "2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"},
		{channels.Bucket{Minutes: 15}, "2026-11-22T10:44:00Z", "2026-11-22T10:30:00Z", "2026-11-22T10:45:00Z"},
		// Minute buckets count from the epoch, not from the output zone:
		// an hour in India starts at :30 local.
		{channels.Bucket{Minutes: 60, Loc: india}, "2026-11-22T10:20:00+05:30", "2026-11-22T04:00:00Z", "2026-11-22T05:00:00Z"},
		{channels.Bucket{Minutes: 240}, "2026-11-22T03:59:59Z", "2026-11-22T00:00:00Z", "2026-11-22T04:00:00Z"},
		{channels.Bucket{Minutes: 1440}, "2026-11-22T23:00:00-05:00", "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"},
		// Before 1970 the floor still goes down.
		{channels.Bucket{Minutes: 10}, "1969-12-31T23:55:00Z", "1969-12-31T23:50:00Z", "1970-01-01T00:00:00Z"},
		// daily is the local calendar day.
		{channels.Bucket{Daily: true}, "2026-11-22T23:30:00Z", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
		{channels.Bucket{Daily: true, Loc: berlin}, "2026-11-22T23:30:00Z", "2026-11-23T00:00:00+01:00", "2026-11-24T00:00:00+01:00"},
		{channels.Bucket{Daily: true, Loc: india}, "2026-11-22T19:00:00Z", "2026-11-23T00:00:00+05:30", "2026-11-24T00:00:00+05:30"},
		// The day the clocks go back has 25 hours.
		{channels.Bucket{Daily: true, Loc: berlin}, "2026-10-25T12:00:00Z", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"},
		{channels.Bucket{Daily: true, Loc: berlin}, "2026-03-29T12:00:00Z", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
	}
	for _, c := range cases {
		got := c.b.Start(utc(c.t))
		if !got.Equal(utc(c.start)) {
			t.Errorf("%+v.Start(%s) = %s, want %s", c.b, c.t, got, c.start)
		}
		if n := c.b.Next(got); !n.Equal(utc(c.next)) {
			t.Errorf("%+v.Next(%s) = %s, want %s", c.b, got, n, c.next)
		}
	}
	if n := (channels.Bucket{Minutes: 60}).Count(utc("2026-11-22T10:59:00Z"), utc("2026-11-22T13:00:00Z")); n != 4 {
		t.Errorf("Count = %d, want 4 (10, 11, 12 and 13 o'clock)", n)
	}
	if n := (channels.Bucket{Daily: true, Loc: berlin}).Count(utc("2026-11-22T22:59:00Z"), utc("2026-11-22T23:00:00Z")); n != 2 {
		t.Errorf("daily Count across Berlin midnight = %d, want 2", n)
	}
	if n := (channels.Bucket{Minutes: 10}).Count(utc("2026-11-22T10:00:00Z"), utc("2026-11-22T09:00:00Z")); n != 0 {
		t.Errorf("Count backwards = %d", n)
	}
}

func TestFormatAggregate(t *testing.T) {
	tenth, fifth := 0.1, 0.2 // variables: constant arithmetic would be exact
	cases := []struct {
		x     float64
		round int
		comma bool
		want  string
	}{
		{3, -1, false, "3.0"},
		{tenth + fifth, -1, false, "0.30000000000000004"},
		{-2.5, -1, false, "-2.5"},
		{1e15, -1, false, "1000000000000000.0"},
		{1e16, -1, false, "1.0e+16"},
		{1.25e20, -1, false, "1.25e+20"},
		{0.0001, -1, false, "0.0001"},
		{0.00001, -1, false, "1.0e-05"},
		{0, -1, false, "0.0"},
		{21.75, -1, true, "21,75"},
		{21.75, 1, false, "21.8"},
		{21.75, 1, true, "21,8"},
		{2.675, 2, false, "2.67"}, // 2.675 is 2.67499999... in binary
		{-0.4, 0, false, "-0"},    // as printf writes it
		{-1.25, 1, false, "-1.2"}, // half-way: to even
		{-1.35, 1, false, "-1.4"},
		{-17.5, 0, false, "-18"},
		{3, 3, false, "3.000"},
	}
	for _, c := range cases {
		if got := channels.FormatAggregate(c.x, c.round, c.comma); got != c.want {
			t.Errorf("FormatAggregate(%v, %d, %v) = %q, want %q", c.x, c.round, c.comma, got, c.want)
		}
	}
}

func TestRoundValue(t *testing.T) {
	cases := []struct {
		v     string
		round int
		want  string
	}{
		{"21.456", 2, "21.46"},
		{"21", 2, "21.00"},
		{"-3.14159", 3, "-3.142"},
		{"-0.04", 1, "-0.0"},
		{"-2.55", 0, "-3"},
		{"21,456", 1, "21,5"}, // a decimal comma stays a comma
		{" 7 ", 1, "7.0"},
		{"+7.25", 1, "7.2"},
		{"1e3", 1, "1e3"}, // not a number to ThingSpeak's rounding
		{".5", 1, ".5"},
		{"5.", 1, "5."},
		{"ok", 1, "ok"},
		{"", 1, ""},
		{"1,000,5", 1, "1,000,5"},
		{"21.456", -1, "21.456"},
	}
	for _, c := range cases {
		if got := channels.RoundValue(c.v, c.round); got != c.want {
			t.Errorf("RoundValue(%q, %d) = %q, want %q", c.v, c.round, got, c.want)
		}
	}
}

func TestParseFilterNumber(t *testing.T) {
	good := map[string]float64{"5": 5, "-5": -5, "+2.5": 2.5, " 3 ": 3, ".5": 0.5, "1e3": 1000, "1.5E-1": 0.15}
	for s, want := range good {
		if got, ok := channels.ParseFilterNumber(s); !ok || got != want {
			t.Errorf("ParseFilterNumber(%q) = %v, %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "-", "5.", "2,5", "1e", "abc", "0x10", "NaN", "Inf", "1 2", strings.Repeat("9", 65)} {
		if got, ok := channels.ParseFilterNumber(s); ok {
			t.Errorf("ParseFilterNumber(%q) = %v, want refused", s, got)
		}
	}
}

// row is a test entry or expected row: created_at as "15:04" on 22
// November 2026 UTC, ID, and values by index ("-" for unset).
type row struct {
	at   string
	id   uint64
	vals []string
}

func (r row) entry() channels.Entry {
	t, err := time.Parse("2006-01-02 15:04", "2026-11-22 "+r.at)
	if err != nil {
		t, err = time.Parse("2006-01-02 15:04", r.at)
		if err != nil {
			panic(err)
		}
	}
	e := channels.Entry{ID: r.id, CreatedAt: t}
	for i, v := range r.vals {
		if v != "-" {
			e.SetValue(i, v)
		}
	}
	return e
}

func (r row) String() string {
	return r.at + " #" + string(rune('0'+r.id)) + " " + strings.Join(r.vals, "|")
}

func rowOf(e channels.Entry, ncols int) string {
	vals := make([]string, ncols)
	for i := range vals {
		if v, ok := e.Value(i); ok {
			vals[i] = v
		} else {
			vals[i] = "-"
		}
	}
	return e.CreatedAt.UTC().Format("2006-01-02 15:04") + " #" + string(rune('0'+e.ID)) + " " + strings.Join(vals, "|")
}

// TestRows runs entries through each aggregation and compares the rows
// with values computed by hand.
func TestRows(t *testing.T) {
	// Fields 1 and 2 shown (index 0, 1); field 3 (index 2) is not.
	feed := []row{
		{"10:05", 1, []string{"1", "10", "100"}},
		{"10:20", 2, []string{"2", "ok", "100"}},
		{"10:40", 3, []string{"4", "-", "100"}},
		{"10:59", 4, []string{"-3", "20", "100"}},
		// nothing from 11:00 to 11:59: an empty bucket
		{"12:10", 5, []string{"2,5", "-", "-"}},
		{"12:50", 6, []string{"x", "-", "-"}},
	}
	cols := []int{0, 1}
	h := channels.Bucket{Minutes: 60}
	cases := []struct {
		name string
		opt  channels.RowOptions
		want []string
	}{
		{"none", channels.RowOptions{Round: -1}, []string{
			"2026-11-22 10:05 #1 1|10|100", "2026-11-22 10:20 #2 2|ok|100", "2026-11-22 10:40 #3 4|-|100",
			"2026-11-22 10:59 #4 -3|20|100", "2026-11-22 12:10 #5 2,5|-|-", "2026-11-22 12:50 #6 x|-|-"}},
		{"timescale", channels.RowOptions{Kind: channels.Timescale, Bucket: h, Round: -1}, []string{
			// the first entry of each hour, all its values, no entry_id
			"2026-11-22 10:00 #0 1|10|100", "2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,5|-|-"}},
		{"sum", channels.RowOptions{Kind: channels.Sum, Bucket: h, Round: -1}, []string{
			// 1+2+4-3 = 4; 10+20 ("ok" is no number); field3 not shown.
			// After 2,5 every number is written with a comma.
			"2026-11-22 10:00 #0 4.0|30.0|-", "2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,5|-|-"}},
		{"average", channels.RowOptions{Kind: channels.Average, Bucket: h, Round: -1}, []string{
			// 4/4 entries with numbers; 30/2.
			"2026-11-22 10:00 #0 1.0|15.0|-", "2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,5|-|-"}},
		{"median", channels.RowOptions{Kind: channels.Median, Bucket: h, Round: -1}, []string{
			// sorted -3 1 2 4: (1+2)/2; 10 20: 15.
			"2026-11-22 10:00 #0 1.5|15.0|-", "2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,5|-|-"}},
		{"median round", channels.RowOptions{Kind: channels.Median, Bucket: h, Round: 2}, []string{
			"2026-11-22 10:00 #0 1.50|15.00|-", "2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,50|-|-"}},
		{"average 20", channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 20}, Round: -1}, []string{
			"2026-11-22 10:00 #0 1.0|10.0|-", "2026-11-22 10:20 #0 2.0|-|-", "2026-11-22 10:40 #0 0.5|20.0|-",
			"2026-11-22 11:00 #0 -|-|-", "2026-11-22 11:20 #0 -|-|-", "2026-11-22 11:40 #0 -|-|-",
			"2026-11-22 12:00 #0 2,5|-|-", "2026-11-22 12:20 #0 -|-|-", "2026-11-22 12:40 #0 -|-|-"}},
		{"sum daily", channels.RowOptions{Kind: channels.Sum, Bucket: channels.Bucket{Daily: true}, Round: 1}, []string{
			"2026-11-22 00:00 #0 6,5|30,0|-"}},
		{"round", channels.RowOptions{Round: 0}, []string{
			"2026-11-22 10:05 #1 1|10|100", "2026-11-22 10:20 #2 2|ok|100", "2026-11-22 10:40 #3 4|-|100",
			"2026-11-22 10:59 #4 -3|20|100", "2026-11-22 12:10 #5 2|-|-", "2026-11-22 12:50 #6 x|-|-"}},
		{"min", channels.RowOptions{Round: -1, Filter: channels.ValueFilter{Min: 1, HasMin: true}}, []string{
			// -3 drops entry 4 whole; "2,5" is no number to the filter;
			// field3 (not shown) is not looked at.
			"2026-11-22 10:05 #1 1|10|100", "2026-11-22 10:20 #2 2|ok|100", "2026-11-22 10:40 #3 4|-|100",
			"2026-11-22 12:10 #5 2,5|-|-", "2026-11-22 12:50 #6 x|-|-"}},
		{"max", channels.RowOptions{Round: -1, Filter: channels.ValueFilter{Max: 10, HasMax: true}}, []string{
			"2026-11-22 10:05 #1 1|10|100", "2026-11-22 10:20 #2 2|ok|100", "2026-11-22 10:40 #3 4|-|100",
			"2026-11-22 12:10 #5 2,5|-|-", "2026-11-22 12:50 #6 x|-|-"}},
		{"sum max", channels.RowOptions{Kind: channels.Sum, Bucket: h, Round: -1, Filter: channels.ValueFilter{Max: 25, HasMax: true}}, []string{
			// the filter sees the sums: 30 > 25 drops the 10:00 row;
			// empty buckets pass.
			"2026-11-22 11:00 #0 -|-|-", "2026-11-22 12:00 #0 2,5|-|-"}},
		{"min rounded", channels.RowOptions{Round: 0, Filter: channels.ValueFilter{Min: 2.5, HasMin: true}}, []string{
			// filtered before rounding: 2 < 2.5 drops entry 2.
			"2026-11-22 10:40 #3 4|-|100", "2026-11-22 12:10 #5 2|-|-", "2026-11-22 12:50 #6 x|-|-"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opt.Cols = cols
			var got []string
			rows := channels.NewRows(c.opt, func(es []channels.Entry) {
				for _, e := range es {
					got = append(got, rowOf(e, 3))
				}
			})
			for _, r := range feed {
				e := r.entry()
				if err := rows.Add([]channels.Entry{e}); err != nil {
					t.Fatal(err)
				}
			}
			rows.Close()
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestRows_Details(t *testing.T) {
	run := func(opt channels.RowOptions, feed []row) ([]string, error) {
		var got []string
		rows := channels.NewRows(opt, func(es []channels.Entry) {
			for _, e := range es {
				got = append(got, rowOf(e, channels.NumValues))
			}
		})
		for _, r := range feed {
			if err := rows.Add([]channels.Entry{r.entry()}); err != nil {
				return got, err
			}
		}
		rows.Close()
		return got, nil
	}
	vals := func(f1, status string) []string {
		v := make([]string, channels.NumValues)
		for i := range v {
			v[i] = "-"
		}
		v[0], v[channels.Status] = f1, status
		return v
	}
	cols := []int{0, channels.Status}

	// Timescale keeps the first entry's status; the others leave it unset.
	feed := []row{{"10:01", 1, vals("1", "first")}, {"10:02", 2, vals("2", "second")}}
	got, _ := run(channels.RowOptions{Kind: channels.Timescale, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1}, feed)
	if len(got) != 1 || !strings.HasSuffix(got[0], "1|-|-|-|-|-|-|-|-|-|-|first") {
		t.Errorf("timescale: %q", got)
	}
	got, _ = run(channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1}, feed)
	if len(got) != 1 || !strings.HasSuffix(got[0], "1.5|-|-|-|-|-|-|-|-|-|-|-") {
		t.Errorf("average: %q", got)
	}

	// An entry older than the current bucket counts in it.
	back := []row{{"10:05", 1, vals("1", "-")}, {"10:25", 2, vals("2", "-")}, {"10:01", 3, vals("4", "-")}}
	got, _ = run(channels.RowOptions{Kind: channels.Sum, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1}, back)
	want := []string{"2026-11-22 10:00 #0 1.0|", "2026-11-22 10:10 #0 -|", "2026-11-22 10:20 #0 6.0|"}
	for i := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("out of order: %q, want %q", got, want)
		}
	}

	// MaxRows counts empty buckets.
	far := []row{{"2026-11-22 10:00", 1, vals("1", "-")}, {"2026-11-23 10:00", 2, vals("1", "-")}}
	if got, err := run(channels.RowOptions{Kind: channels.Sum, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1, MaxRows: 100}, far); err != channels.ErrTooManyRows || len(got) != 0 {
		t.Errorf("145 buckets with MaxRows 100: %v, %d rows emitted first", err, len(got))
	}
	if got, err := run(channels.RowOptions{Kind: channels.Sum, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1, MaxRows: 145}, far); err != nil || len(got) != 145 {
		t.Errorf("145 buckets with MaxRows 145: %d rows, %v", len(got), err)
	}

	// Median of one, of an odd and of an even count; of none.
	med := []row{
		{"10:00", 1, vals("5", "-")},
		{"10:10", 2, vals("3", "-")}, {"10:11", 3, vals("9", "-")}, {"10:12", 4, vals("1", "-")},
		{"10:20", 5, vals("4", "-")}, {"10:21", 6, vals("-2", "-")}, {"10:22", 7, vals("10", "-")}, {"10:23", 8, vals("7", "-")},
		{"10:30", 9, vals("n/a", "-")},
	}
	got, _ = run(channels.RowOptions{Kind: channels.Median, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: -1}, med)
	wantMed := []string{"5.0|", "3.0|", "5.5|", "-|"} // sorted -2 4 7 10: (4+7)/2
	if len(got) != len(wantMed) {
		t.Fatalf("median rows %q", got)
	}
	for i, w := range wantMed {
		if !strings.HasPrefix(got[i][len("2026-11-22 10:00 #0 "):], w) {
			t.Errorf("median row %d = %q, want %s...", i, got[i], w)
		}
	}

	// Rounding negative averages: (-1.25 + -1.26)/2 = -1.255 -> -1.25 or
	// -1.26 as the binary value falls (-1.25499999...).
	neg := []row{{"10:00", 1, vals("-1.25", "-")}, {"10:01", 2, vals("-1.26", "-")}}
	got, _ = run(channels.RowOptions{Kind: channels.Average, Bucket: channels.Bucket{Minutes: 10}, Cols: cols, Round: 2}, neg)
	if len(got) != 1 || !strings.Contains(got[0], " -1.25|") {
		t.Errorf("negative round: %q", got)
	}
}

// FuzzParseBucket checks that ParseBucket accepts exactly the listed
// widths and "daily", and that every accepted bucket starts at or before
// a time and ends after it.
func FuzzParseBucket(f *testing.F) {
	for _, s := range []string{"10", "60", "1440", "daily", "0", "61", "-10", "00010", "1e1", ""} {
		f.Add(s, int64(1764000000))
	}
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		b, ok := channels.ParseBucket(s)
		if !ok {
			return
		}
		if !b.Daily {
			valid := false
			for _, m := range channels.BucketMinutes {
				valid = valid || m == b.Minutes
			}
			if !valid {
				t.Fatalf("%q gave %d minutes", s, b.Minutes)
			}
		}
		unix %= 1 << 40 // within a few thousand years either side
		at := time.Unix(unix, 0)
		for _, loc := range []*time.Location{nil, time.FixedZone("", -5*3600-1800)} {
			b.Loc = loc
			start := b.Start(at)
			next := b.Next(start)
			if start.After(at) || !next.After(at) {
				t.Fatalf("%q at %s: bucket %s..%s", s, at, start, next)
			}
			if n := b.Count(at, at); n != 1 {
				t.Fatalf("%q: Count(t, t) = %d", s, n)
			}
		}
	})
}

// FuzzRows runs arbitrary field values through each aggregation and
// rounding: no panic, rows in time order, and every rounded number has
// exactly round decimals.
func FuzzRows(f *testing.F) {
	f.Add("21.5", "2,5", "-3", uint8(2), uint8(3))
	f.Add("x", "", "1e5", uint8(0), uint8(0))
	f.Add(" 7 ", "+1", strings.Repeat("9", 400), uint8(4), uint8(30))
	f.Fuzz(func(t *testing.T, a, b, c string, kind, round uint8) {
		opt := channels.RowOptions{
			Kind:   channels.AggregateKind(kind % 5),
			Bucket: channels.Bucket{Minutes: 10},
			Cols:   []int{0, 1, channels.Status},
			Round:  int(round%32) - 1,
		}
		var prev time.Time
		rows := channels.NewRows(opt, func(es []channels.Entry) {
			for _, e := range es {
				if e.CreatedAt.Before(prev) {
					t.Fatalf("row at %s after %s", e.CreatedAt, prev)
				}
				prev = e.CreatedAt
				for _, col := range []int{0, 1} {
					v, ok := e.Value(col)
					// An input left as it is must be no number, or one
					// already rounded.
					input := v == a || v == b || v == c
					if !ok || opt.Round < 0 || input && channels.RoundValue(v, opt.Round) == v {
						continue
					}
					if strings.HasSuffix(v, "Inf") || v == "NaN" {
						continue
					}
					sep := strings.LastIndexAny(v, ".,")
					if opt.Round == 0 && sep < 0 {
						continue
					}
					if sep < 0 || len(v)-sep-1 != opt.Round {
						t.Fatalf("%q rounded to %d decimals", v, opt.Round)
					}
				}
			}
		})
		base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		vals := []string{a, b, c}
		for i := range 6 {
			e := channels.Entry{ID: uint64(i + 1), CreatedAt: base.Add(time.Duration(i*7) * time.Minute)}
			e.SetValue(i%2, vals[i%3])
			e.SetValue(channels.Status, vals[(i+1)%3])
			if err := rows.Add([]channels.Entry{e}); err != nil {
				t.Fatal(err)
			}
		}
		rows.Close()
	})
}
