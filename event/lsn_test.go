package event_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tidemark/tidemark/event"
)

func TestLSNText(t *testing.T) {
	for _, tc := range []struct {
		lsn  event.LSN
		text string
	}{
		{0, "0/0"},
		{1, "0/1"},
		{0x16B374D848, "16/B374D848"},
		{0x100000000, "1/0"},
		{0xFFFFFFFFFFFFFFFF, "FFFFFFFF/FFFFFFFF"},
	} {
		if got := tc.lsn.String(); got != tc.text {
			t.Errorf("LSN(%#x).String() = %s, want %s", uint64(tc.lsn), got, tc.text)
		}
		// The form PostgreSQL's pg_lsn output and pglogrepl.LSN.String use.
		if want := fmt.Sprintf("%X/%X", uint32(tc.lsn>>32), uint32(tc.lsn)); tc.text != want {
			t.Errorf("table entry %s is not PostgreSQL's form %s", tc.text, want)
		}
		got, err := event.ParseLSN(tc.text)
		if err != nil || got != tc.lsn {
			t.Errorf("ParseLSN(%q) = %#x, %v", tc.text, uint64(got), err)
		}
		b, err := json.Marshal(tc.lsn)
		if err != nil || string(b) != `"`+tc.text+`"` {
			t.Errorf("json.Marshal(%s) = %s, %v", tc.text, b, err)
		}
		var back event.LSN
		if err := json.Unmarshal(b, &back); err != nil || back != tc.lsn {
			t.Errorf("json.Unmarshal(%s) = %s, %v", b, back, err)
		}
	}
	if got, err := event.ParseLSN("16/b374d848"); err != nil || got != 0x16B374D848 {
		t.Errorf("lower case: %s, %v", got, err)
	}
	for _, bad := range []string{"", "/", "1/", "/1", "1", "1/2/3", "G/0", "0/-1", " 0/1", "0/1 ", "123456789/0", "0/123456789", "0x1/0"} {
		if got, err := event.ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) = %s, want an error", bad, got)
		}
	}
}
