package encoder

import (
	"math"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestFloat4ArrayEncoding checks the fast real[] encoder against pgx's own, byte for byte.
func TestFloat4ArrayEncoding(t *testing.T) {
	stock := pgtype.NewMap()
	fast := pgtype.NewMap()
	useFloat4Arrays(fast)
	useFloat4Arrays(fast) // twice is once
	if _, ok := fast.TypeForOID(pgtype.Float4ArrayOID); !ok {
		t.Fatal("real[] unknown")
	}
	for _, v := range [][]float32{nil, {}, {1}, {0.5, -2, float32(math.Inf(1)), float32(math.NaN()), math.MaxFloat32, -0}} {
		want, err := stock.Encode(pgtype.Float4ArrayOID, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast.Encode(pgtype.Float4ArrayOID, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) || (got == nil) != (want == nil) {
			t.Errorf("%v:\n got %x\nwant %x", v, got, want)
		}
	}
}
