package encoder

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
)

// TextAttributes are the attribute keys whose values go into a product's text, in this order.
// Other attributes (sizes, weights, internal codes…) describe logistics rather than the
// product, and would make a price- or stock-only change look like a text change.
var TextAttributes = []string{"brand", "category", "color", "material", "tags"}

// textAttributes decodes only the [TextAttributes], in their order, skipping the rest.
type textAttributes struct {
	Brand    json.RawMessage `json:"brand"`
	Category json.RawMessage `json:"category"`
	Color    json.RawMessage `json:"color"`
	Material json.RawMessage `json:"material"`
	Tags     json.RawMessage `json:"tags"`
}

// Text is what gets embedded for a product: its name, its description and the
// [TextAttributes] as "key: value" lines (arrays joined with ", "), empty parts left out.
func Text(name, description string, attributes json.RawMessage) string {
	var b strings.Builder
	b.Grow(len(name) + len(description) + 64)
	b.WriteString(strings.TrimSpace(name))
	if d := strings.TrimSpace(description); d != "" {
		b.WriteByte('\n')
		b.WriteString(d)
	}
	if len(attributes) == 0 || bytes.Equal(attributes, []byte("null")) || bytes.Equal(attributes, []byte("{}")) {
		return b.String()
	}
	var attrs textAttributes
	if err := json.Unmarshal(attributes, &attrs); err != nil {
		return b.String() // not an object: nothing documented to take from it
	}
	for i, raw := range []json.RawMessage{attrs.Brand, attrs.Category, attrs.Color, attrs.Material, attrs.Tags} {
		k := TextAttributes[i]
		if v := attrText(raw); v != "" {
			b.WriteByte('\n')
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
		}
	}
	return b.String()
}

// attrText renders an attribute value: strings as they are, numbers and booleans as written,
// arrays of those joined with ", "; objects and nulls as nothing.
func attrText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		s, ok := jsonString(raw)
		if !ok {
			return ""
		}
		return strings.TrimSpace(s)
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return ""
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			if len(it) > 0 && it[0] == '[' {
				continue
			}
			if s := attrText(it); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	case '{', 'n':
		return ""
	default:
		return string(raw)
	}
}

// jsonString decodes a JSON string; one without escapes (most) is taken as it is, skipping
// a second full parse of a value its event has already validated.
func jsonString(raw []byte) (string, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 {
		return string(raw[1 : n-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// ContentHash identifies a text as embedded by a model: when it is the stored one, the stored
// vector is still right and no embedding is computed.
func ContentHash(model, text string) []byte {
	h := sha256.New()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(text))
	return h.Sum(nil)
}
