package channels_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/feedmq/feedmq/channels"
)

func importChannel() *channels.Channel {
	ch := &channels.Channel{ID: 7, Name: "t"}
	ch.Fields[0], ch.Fields[1] = "Temp", "Hum"
	return ch
}

// readAll reads every row of csv, returning the entries and the first error.
func readAll(t *testing.T, csv string) ([]channels.Entry, []int, error) {
	t.Helper()
	r, err := channels.NewCSVImport(strings.NewReader(csv), importChannel(), channels.Limits{})
	if err != nil {
		return nil, nil, err
	}
	var es []channels.Entry
	var lines []int
	for {
		e, err := r.Next()
		if err == io.EOF {
			return es, lines, nil
		} else if err != nil {
			return es, lines, err
		}
		es = append(es, e)
		lines = append(lines, r.Line())
	}
}

func TestCSVImport(t *testing.T) {
	t1 := time.Date(2021, 2, 18, 21, 46, 23, 0, time.UTC)
	t2 := time.Date(2023, 1, 6, 16, 44, 16, 0, time.UTC)
	type want struct {
		id     uint64
		at     time.Time
		values map[int]string
	}
	tests := []struct {
		name  string
		csv   string
		want  []want
		lines []int
		err   string // substring of the error; "" for none
	}{
		{
			name: "api csv with UTC suffix",
			csv:  "created_at,entry_id,field1,field2\n2021-02-18 21:46:23 UTC,10458189,6.000000,12.000000\n",
			want: []want{{10458189, t1, map[int]string{0: "6.000000", 1: "12.000000"}}},
		},
		{
			name: "web export with offset and all columns",
			csv: "created_at,entry_id,field1,field2,latitude,longitude,elevation,status\n" +
				"2023-01-06T16:44:16+00:00,1,20.5,,52.5,13.4,34,ok\n" +
				"2023-01-06T17:44:16+01:00,3,21,40,,,,\n",
			want: []want{
				{1, t2, map[int]string{0: "20.5", channels.Latitude: "52.5", channels.Longitude: "13.4", channels.Elevation: "34", channels.Status: "ok"}},
				{3, t2, map[int]string{0: "21", 1: "40"}},
			},
			lines: []int{2, 3},
		},
		{
			name: "numeric zone with a space",
			csv:  "created_at,field1\n2021-02-18 22:46:23 +0100,1\n",
			want: []want{{0, t1, map[int]string{0: "1"}}},
		},
		{
			name: "columns in another order, no entry_id",
			csv:  "field2,created_at\n5,2021-02-18T21:46:23Z\n",
			want: []want{{0, t1, map[int]string{1: "5"}}},
		},
		{
			name: "quoted status with commas, quotes and a line break",
			csv:  "created_at,status\n2021-02-18 21:46:23 UTC,\"door open, \"\"back\"\"\nnow\"\n2021-02-18 21:46:23 UTC,x\n",
			want: []want{
				{0, t1, map[int]string{channels.Status: "door open, \"back\"\nnow"}},
				{0, t1, map[int]string{channels.Status: "x"}},
			},
			lines: []int{2, 4},
		},
		{
			name: "BOM and CRLF",
			csv:  "\ufeffcreated_at,entry_id,field1\r\n2021-02-18 21:46:23 UTC,2,7\r\n",
			want: []want{{2, t1, map[int]string{0: "7"}}},
		},
		{name: "header only", csv: "created_at,entry_id,field1\n"},
		{name: "empty file", csv: "", err: "line 1: the file is empty"},
		{name: "no created_at", csv: "entry_id,field1\n1,2\n", err: "line 1: the header has no created_at"},
		{name: "unknown column", csv: "created_at,field9\n", err: `line 1: column 2, "field9", is not one of`},
		{name: "repeated column", csv: "created_at,field1,1\n", err: `line 1: column "1" appears twice`},
		{name: "short row", csv: "created_at,field1\n2021-02-18 21:46:23 UTC\n", err: "line 2: the row has a different number of columns"},
		{name: "bad time", csv: "created_at,field1\n2021-02-18 21:46:23 UTC,1\nyesterday,2\n", err: "line 3: created_at must look like", want: []want{{0, t1, map[int]string{0: "1"}}}},
		{name: "named zone", csv: "created_at,field1\n2021-02-18 21:46:23 EST,1\n", err: "line 2: created_at"},
		{name: "bad entry_id", csv: "created_at,entry_id,field1\n2021-02-18 21:46:23 UTC,0,1\n", err: `line 2: entry_id "0"`},
		{name: "negative entry_id", csv: "created_at,entry_id,field1\n2021-02-18 21:46:23 UTC,-4,1\n", err: `line 2: entry_id "-4"`},
		{name: "field not enabled", csv: "created_at,field3\n2021-02-18 21:46:23 UTC,1\n", err: "line 2: field3 is not enabled on channel 7"},
		{name: "field not enabled but empty", csv: "created_at,field1,field3\n2021-02-18 21:46:23 UTC,1,\n", want: []want{{0, t1, map[int]string{0: "1"}}}},
		{name: "value too long", csv: "created_at,field1\n2021-02-18 21:46:23 UTC," + strings.Repeat("x", 256) + "\n", err: "line 2: field1 is 256 characters long; the limit is 255"},
		{name: "latitude out of range", csv: "created_at,latitude\n2021-02-18 21:46:23 UTC,91\n", err: "line 2: lat must be a decimal number"},
		{name: "control character", csv: "created_at,status\n2021-02-18 21:46:23 UTC,a\x01b\n", err: "line 2: status contains the control character"},
		{name: "row without values", csv: "created_at,field1\n2021-02-18 21:46:23 UTC,\n", err: "line 2: the row sets no field"},
		{name: "bare quote", csv: "created_at,status\n2021-02-18 21:46:23 UTC,a\"b\n", err: "line 2: malformed CSV"},
		{name: "row too long", csv: "created_at,status\n2021-02-18 21:46:23 UTC," + strings.Repeat("x", 2*channels.MaxImportRow) + "\n", err: "is longer than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, lines, err := readAll(t, tt.csv)
			if tt.err == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				if channels.ErrorCode(err) != channels.EINVALID {
					t.Errorf("code %q, want invalid", channels.ErrorCode(err))
				}
			}
			if len(es) != len(tt.want) {
				t.Fatalf("%d entries, want %d: %+v", len(es), len(tt.want), es)
			}
			for i, w := range tt.want {
				e := es[i]
				if e.ChannelID != 7 || e.ID != w.id || !e.CreatedAt.Equal(w.at) {
					t.Errorf("entry %d: channel %d id %d at %v, want 7 %d %v", i, e.ChannelID, e.ID, e.CreatedAt, w.id, w.at)
				}
				for v := 0; v < channels.NumValues; v++ {
					got, ok := e.Value(v)
					want, wok := w.values[v]
					if ok != wok || got != want {
						t.Errorf("entry %d %s = %q (%v), want %q (%v)", i, channels.ValueName(v), got, ok, want, wok)
					}
				}
			}
			if tt.lines != nil && !equalInts(lines, tt.lines) {
				t.Errorf("lines %v, want %v", lines, tt.lines)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseImportTime(t *testing.T) {
	want := time.Date(2021, 2, 18, 21, 46, 23, 0, time.UTC)
	for _, s := range []string{
		"2021-02-18 21:46:23 UTC", "2021-02-18T21:46:23Z", "2021-02-18T21:46:23+00:00",
		"2021-02-18 16:46:23 -0500", "2021-02-18 22:46:23 +01:00", "2021-02-18 21:46:23",
		" 2021-02-18 21:46:23.999 UTC ",
	} {
		got, err := channels.ParseImportTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseImportTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "2021-02-18", "2021-02-18 21:46:23 CET", "2021-02-30 21:46:23 UTC", "1969-12-31 23:59:59 UTC"} {
		if _, err := channels.ParseImportTime(s); err == nil {
			t.Errorf("ParseImportTime(%q) accepted", s)
		}
	}
}

// FuzzCSVImport checks that no input crashes the importer, that every
// error is an invalid-input error naming a line, and that every entry it
// returns is one the payload rules accept.
func FuzzCSVImport(f *testing.F) {
	f.Add("created_at,entry_id,field1,field2\n2021-02-18 21:46:23 UTC,1,6,12\n")
	f.Add("\ufeffcreated_at,status\r\n2023-01-06T16:44:16+00:00,\"a,b\"\r\n")
	f.Add("created_at,latitude,longitude,elevation\n2021-02-18 21:46:23,1,2,3\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := channels.NewCSVImport(strings.NewReader(in), importChannel(), channels.Limits{})
		for err == nil {
			var e channels.Entry
			e, err = r.Next()
			if err != nil {
				break
			}
			if !e.HasValues() || e.CreatedAt.IsZero() || e.ChannelID != 7 {
				t.Fatalf("bad entry %+v", e)
			}
			if _, ok := e.Field(3); ok {
				t.Fatalf("disabled field3 set: %+v", e)
			}
		}
		if err == io.EOF {
			return
		}
		var ce *channels.Error
		if !errors.As(err, &ce) || ce.Code != channels.EINVALID || !strings.HasPrefix(ce.Message, "line ") {
			t.Fatalf("error %T %v", err, err)
		}
	})
}
