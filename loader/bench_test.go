package loader_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// BenchmarkReadValidate measures the client side of a load: CSV parsing and validation.
func BenchmarkReadValidate(b *testing.B) {
	input := drop(20000, 0, "")
	b.SetBytes(int64(len(input)))
	for b.Loop() {
		rd, err := loader.Open(strings.NewReader(input), loader.CSV)
		if err != nil {
			b.Fatal(err)
		}
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if _, reason := loader.Validate(rec); reason != "" {
				b.Fatal(reason)
			}
		}
	}
}
