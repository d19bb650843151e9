package channels_test

import (
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
