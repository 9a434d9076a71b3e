package loader_test

import (
	"bytes"
	"encoding/json"
	"iter"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// records reads rd to the end, failing the test on a read error.
func records(tb testing.TB, rd loader.Reader) iter.Seq[*loader.Record] {
	return func(yield func(*loader.Record) bool) {
		for rec, err := range loader.Records(rd) {
			if err != nil {
				tb.Fatal(err)
			}
			if !yield(rec) {
				return
			}
		}
	}
}

// rejectLines parses the rejects file a load wrote, one JSON object a line.
func rejectLines(t *testing.T, rejects *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(rejects.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if jerr := json.Unmarshal([]byte(line), &m); jerr != nil {
			t.Fatalf("rejects line %q: %v", line, jerr)
		}
		out = append(out, m)
	}
	return out
}
