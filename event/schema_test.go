package event_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/tidemark/tidemark/event"
)

func loadSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	f, err := os.Open("event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("event.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, name string, ev []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(doc); err != nil {
		t.Errorf("%s does not match event.schema.json: %v\n%s", name, err, ev)
	}
}

// goldenFiles returns the golden events of one envelope: native (insert.json, …) or debezium
// (debezium_insert.json, …). replication's TestEventGolden writes and checks them from a real slot.
func goldenFiles(t testing.TB, debezium bool) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if strings.HasPrefix(name, "debezium_") != debezium {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	if len(out) < 8 {
		t.Fatalf("found %d golden files (debezium %v), want at least 8", len(out), debezium)
	}
	return out
}

func TestGoldenMatchesSchema(t *testing.T) {
	schema := loadSchema(t)
	for name, ev := range goldenFiles(t, false) {
		validate(t, schema, name, ev)
	}
}

// TestAppendJSONMatchesSchema: the source fields the golden files blank out (LSNs, xid,
// times, slot) match the schema at their extremes.
func TestAppendJSONMatchesSchema(t *testing.T) {
	schema := loadSchema(t)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CEST", 2*3600)
	}
	for name, src := range map[string]event.Source{
		"zero":   {},
		"max":    {Slot: "s", LSN: ^event.LSN(0), CommitLSN: ^event.LSN(0), XID: ^uint32(0), CommitTS: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Seq: 1 << 40},
		"zone":   {Slot: "tidemark_eu", LSN: 0x16B374D848, CommitLSN: 0x16B374D900, XID: 777, CommitTS: time.Date(2024, 5, 1, 12, 0, 0, 500, paris), Seq: 3},
		"quotes": {Slot: `a "slot"\`, LSN: 1, CommitLSN: 2, CommitTS: time.Unix(0, 0)},
	} {
		c := event.Change{Op: event.OpInsert, Schema: "public", Table: "products", Key: event.Key{SupplierID: 1, ID: 2},
			After: event.Row{{Name: "id", Value: []byte("2")}}, Source: src, TsMs: time.Now().UnixMilli()}
		validate(t, schema, name, c.AppendJSON(nil))
	}
}

func TestSchemaRejectsBadEvents(t *testing.T) {
	schema := loadSchema(t)
	for name, ev := range map[string]string{
		"no key":                `{"op":"insert","schema":"public","table":"products","after":{},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"bad lsn":               `{"op":"insert","schema":"public","table":"products","key":{"supplier_id":1,"id":1},"after":{},"source":{"slot":"s","lsn":"1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"delete+after":          `{"op":"delete","schema":"public","table":"products","key":{"supplier_id":1,"id":1},"before":{},"after":{},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"epoch on a row change": `{"op":"insert","schema":"public","table":"products","key":{"supplier_id":1,"id":1},"after":{},"epoch":{"id":"e","supplier_id":1,"open_lsn":"0/1"},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"open without epoch":    `{"op":"epoch_open","schema":"public","table":"products","key":{"supplier_id":1,"id":0},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"close without rows":    `{"op":"epoch_close","schema":"public","table":"products","key":{"supplier_id":1,"id":0},"epoch":{"id":"e","supplier_id":1,"open_lsn":"0/1"},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
		"unknown op":            `{"op":"upsert","schema":"public","table":"products","key":{"supplier_id":1,"id":1},"after":{},"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/1","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0},"ts_ms":1}`,
	} {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(ev))
		if err != nil {
			t.Fatal(err)
		}
		if schema.Validate(doc) == nil {
			t.Errorf("%s: schema accepted %s", name, ev)
		}
	}
}
