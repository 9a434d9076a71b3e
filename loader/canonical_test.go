package loader_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// canonicalCases are objects CanonicalJSON must render as jsonb prints them back, and (declined)
// those it leaves to the database.
var canonicalCases = []struct {
	in       string
	declined bool
}{
	{in: `{}`}, {in: ` { } `}, {in: `{"a":1}`}, {in: `{"b":1,"a":2,"aa":3,"":4}`}, {in: `{"a":1,"a":2}`},
	{in: `{"z":{"y":[1,2,{"x":null}],"é":true},"b":false}`},
	{in: `{"n":[0,-0,-0.0,1.50,12345678901234567890.1234567890,-3.25,0.001]}`},
	{in: `{"s":"tab\there \"q\" back\\slash \/ \u00e9 \ud83d\ude00 \u001f \u0001 \b\f\n\r"}`},
	{in: `{"ключ":"значение","k":"v"}`}, {in: `{"a" : [ ] , "b" : [ 1 , 2 ] }`},
	{in: `{"bb":1,"a":{"bb":1,"a":1}}`},
	// numeric prints exponents out in full: left to the database.
	{in: `{"e":1e3}`, declined: true}, {in: `{"e":[1E-2]}`, declined: true},
	// jsonb refuses \u0000 altogether.
	{in: `{"x":"a\u0000"}`, declined: true},
}

// TestCanonicalJSONMatchesJSONB checks the loader's rendering against PostgreSQL's own, and
// that it declines only what it is meant to leave to the database.
func TestCanonicalJSONMatchesJSONB(t *testing.T) {
	pool, _ := newDB(t)
	accepted := 0
	for _, c := range canonicalCases {
		got, ok := loader.CanonicalJSON(c.in)
		if !ok {
			if !c.declined {
				t.Errorf("%s: declined (left to the database), want it rendered", c.in)
			}
			continue
		}
		var want string
		if err := pool.QueryRow(context.Background(), "SELECT $1::jsonb::text", c.in).Scan(&want); err != nil {
			t.Fatalf("%s: rendered as %s, but the database refuses it: %v", c.in, got, err)
		}
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", c.in, got, want)
		}
		accepted++
	}
	if accepted == 0 {
		t.Fatal("CanonicalJSON declined every case: nothing was compared")
	}
}

// notJSON are texts CanonicalJSON must decline because they are not JSON: Validate takes what
// it renders as checked.
var notJSON = []string{
	`{"a":01}`, `{"a":-01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":+1}`, `{"a":1.2.3}`, `{"a":0x1}`,
	"{\"a\":\"x\ty\"}", "{\"a\x01\":1}", `{"a":"\x"}`, `{"a":"\u12g4"}`, `{"a":"\u+123"}`,
	`{"a":1,}`, `{"a":[1,]}`, `{"a" 1}`, `{a:1}`, `{"a":tru}`, `{"a":nul}`, `{"a":1} x`, `{"a":1}}`,
	`{"a":[1}`, `{"a":"x}`, `{`, ``, ` `,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestCanonicalJSONDeclinesInvalid(t *testing.T) {
	for _, in := range notJSON {
		if json.Valid([]byte(in)) {
			t.Fatalf("%.40q is JSON: a bad case", in)
		}
		if out, ok := loader.CanonicalJSON(in); ok {
			t.Errorf("%.40q: rendered as %.40q, want it declined", in, out)
		}
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, c := range canonicalCases {
		f.Add(c.in)
	}
	for _, in := range notJSON {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := loader.CanonicalJSON(in)
		if !ok {
			return
		}
		// Validate skips json.Valid for what CanonicalJSON renders.
		if !json.Valid([]byte(in)) {
			t.Fatalf("%q → %q: rendered, but not JSON", in, out)
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("%q → %q: not JSON", in, out)
		}
		// The same value: what encoding/json reads from both is equal (the last of duplicate
		// keys wins in both), numbers compared digit for digit, except that numeric has no
		// negative zero.
		if a, b := meaning(t, in), meaning(t, out); !reflect.DeepEqual(a, b) {
			t.Fatalf("%q → %q: the meaning changed:\n%#v\n%#v", in, out, a, b)
		}
		if again, ok := loader.CanonicalJSON(out); !ok || again != out {
			t.Fatalf("%q → %q → %q: not stable", in, out, again)
		}
	})
}

// meaning decodes s with encoding/json, numbers kept as their text with a negative zero made
// positive.
func meaning(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return unsignZero(v)
}

func unsignZero(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = unsignZero(e)
		}
	case []any:
		for i, e := range v {
			v[i] = unsignZero(e)
		}
	case json.Number:
		if s, ok := strings.CutPrefix(string(v), "-"); ok && strings.Trim(s, "0.") == "" {
			return json.Number(s)
		}
	}
	return v
}
