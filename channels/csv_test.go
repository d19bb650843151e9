package channels_test

import (
	"strings"
	"testing"

	"github.com/feedmq/feedmq/channels"
)

func TestCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "21.5": "21.5", "-2.5": "-2.5", "+3": "+3", "-.5": "-.5",
		"-": "'-", "+": "'+", "-1e5": "'-1e5", "=1": "'=1", "@x": "'@x",
		"\t=1": "'\t=1", "\r=1": "'\r=1", "a=1": "a=1", " =1": " =1",
	} {
		if got := channels.CSVCell(in); got != want {
			t.Errorf("CSVCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCSVCell: whatever a value holds, its cell never starts with a
// character that makes a spreadsheet run it, unless it is a plain decimal
// number, and the value itself is kept whole after any prefix.
func FuzzCSVCell(f *testing.F) {
	for _, s := range []string{"-2.5", "=1+1", "@SUM(1)", "\t=1", "+3", "-2+3+cmd|' /C calc'!A0", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := channels.CSVCell(s)
		if !strings.HasSuffix(got, s) || len(got) > len(s)+1 {
			t.Fatalf("CSVCell(%q) = %q: the value is not kept whole", s, got)
		}
		if got != "" && strings.ContainsRune("=+-@\t\r", rune(got[0])) && !channels.IsDecimal(got) {
			t.Fatalf("CSVCell(%q) = %q starts a formula", s, got)
		}
	})
}
