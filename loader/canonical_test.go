package loader_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

var canonicalCases = []string{
	`{}`, ` { } `, `{"a":1}`, `{"b":1,"a":2,"aa":3,"":4}`, `{"a":1,"a":2}`, `{"z":{"y":[1,2,{"x":null}],"é":true},"b":false}`,
	`{"n":[0,-0,-0.0,1.50,12345678901234567890.1234567890,-3.25,0.001]}`,
	`{"s":"tab\there \"q\" back\\slash \/ \u00e9 \ud83d\ude00 \u001f \u0001 \b\f\n\r"}`,
	`{"ключ":"значение","k":"v"}`, `{"a" : [ ] , "b" : [ 1 , 2 ] }`, `{"e":1e3}`, `{"e":[1E-2]}`,
	`{"x":"a\u0000"}`, `{"bb":1,"a":{"bb":1,"a":1}}`,
}

// TestCanonicalJSONMatchesJSONB checks the loader's rendering against PostgreSQL's own.
func TestCanonicalJSONMatchesJSONB(t *testing.T) {
	pool, _ := newDB(t)
	for _, in := range canonicalCases {
		got, ok := loader.CanonicalJSON(in)
		if !ok {
			t.Logf("%s: left to the database", in)
			continue
		}
		var want string
		if err := pool.QueryRow(context.Background(), "SELECT $1::jsonb::text", in).Scan(&want); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", in, got, want)
		}
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, c := range canonicalCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return // the loader only canonicalises what it validated
		}
		out, ok := loader.CanonicalJSON(in)
		if !ok {
			return
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("%q → %q: not JSON", in, out)
		}
		if again, ok := loader.CanonicalJSON(out); !ok || again != out {
			t.Fatalf("%q → %q → %q: not stable", in, out, again)
		}
	})
}
