package health

import (
	"encoding/json"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", -2048: "-2.0 KiB"}
	for n, want := range tests {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLeanShape(t *testing.T) {
	tests := []struct {
		primary, unique bool
		cols            []string
		pred            string
		exprs           bool
		want            string
	}{
		{primary: true, unique: true, cols: []string{"supplier_id", "id"}, want: "primary key"},
		{unique: true, cols: []string{"supplier_id", "sku"}, want: "unique (supplier_id, sku)"},
		{cols: []string{"updated_at"}, want: "updated_at"},
		{cols: []string{"supplier_id", "id"}, pred: "(status = 'pending'::text)", want: "pending"},
		{cols: []string{"sku"}},
		{unique: true, cols: []string{"supplier_id", "sku"}, pred: "(price > 0)"},
		{cols: []string{""}, exprs: true},
		{cols: []string{"updated_at", "name"}},
	}
	for _, tt := range tests {
		if got := leanShape(tt.primary, tt.unique, tt.cols, tt.pred, tt.exprs); got != tt.want {
			t.Errorf("leanShape(%+v) = %q, want %q", tt, got, tt.want)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	b, err := json.Marshal([]Check{fail("wal_level", "fix it", "bad")})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `[{"name":"wal_level","status":"FAIL","detail":"bad","fix":"fix it"}]` {
		t.Fatalf("JSON = %s", b)
	}
	var back []Check
	if err := json.Unmarshal(b, &back); err != nil || back[0].Level != Fail {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}
