package loader

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Row is a validated record, ready for the staging table. Empty optional fields are NULL
// (nil); Status "" means the column default ('pending'); Attributes is a JSON object, as
// jsonb prints it when that can be done exactly.
type Row struct {
	Line        int64
	SKU         string
	Name        string
	Description *string
	Price       *string // a plain decimal with at most 2 decimals, within numeric(12,2)
	Currency    *string // 3 upper-case letters
	Status      string
	Attributes  string

	attrsExact bool // Attributes is exactly how jsonb prints them
}

// maxSKU is the length of products.sku (varchar(100)), in characters.
const maxSKU = 100

// Validate checks a record against the products table and returns the row to load, or the
// reason it is rejected: the field and the problem. Nothing is ever fixed silently, except that
// the currency code is upper-cased.
func Validate(rec *Record) (Row, string) {
	if rec.Reason != "" {
		return Row{}, rec.Reason
	}
	f := &rec.Fields
	for i, v := range f {
		reason := ""
		switch {
		case !rec.valid8:
			reason = checkText(v)
		case strings.IndexByte(v, 0) >= 0:
			reason = "contains a NUL character"
		}
		if reason != "" {
			return Row{}, Columns[i] + ": " + reason
		}
	}
	row := Row{Line: rec.Line, SKU: f[colSKU], Name: f[colName], Status: f[colStatus], Attributes: f[colAttributes]}
	switch {
	case row.SKU == "":
		return Row{}, "sku: empty"
	case len(row.SKU) > maxSKU && utf8.RuneCountInString(row.SKU) > maxSKU:
		return Row{}, "sku: longer than 100 characters"
	case row.Name == "":
		return Row{}, "name: missing"
	}
	if v := f[colDescription]; v != "" {
		row.Description = &v
	}
	if v := f[colPrice]; v != "" {
		if reason := checkPrice(v); reason != "" {
			return Row{}, "price: " + reason
		}
		row.Price = &v
	}
	if v := f[colCurrency]; v != "" {
		if len(v) != 3 || !isLetter(v[0]) || !isLetter(v[1]) || !isLetter(v[2]) {
			return Row{}, "currency: not 3 letters (" + quoteShort(v) + ")"
		}
		v = strings.ToUpper(v)
		row.Currency = &v
	}
	if row.Attributes == "" {
		row.Attributes, row.attrsExact = "{}", true
	} else if rec.attrsExact {
		row.attrsExact = true
	} else if canon, exact := canonicalJSON(row.Attributes); exact && canon[0] == '{' {
		// What canonicalJSON reproduces, checkAttributes accepts: one reading, not two.
		row.Attributes, row.attrsExact = canon, true
	} else if reason := checkAttributes(row.Attributes); reason != "" {
		return Row{}, "attributes: " + reason
	}
	return row, ""
}

// checkText rejects what PostgreSQL's text types cannot hold.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character"
	}
	return ""
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// maxIntDigits is the integer digits numeric(12,2) holds.
const maxIntDigits = 10

// checkPrice accepts a plain non-negative decimal (digits, an optional point and at most two
// decimals, optional trailing zeros beyond them) that fits numeric(12,2).
func checkPrice(s string) string {
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	intPart, frac, hasPoint := strings.Cut(body, ".")
	if (intPart == "" && frac == "") || (hasPoint && frac == "" && intPart == "") || !allDigits(intPart) || !allDigits(frac) {
		if strings.IndexByte(s, ',') >= 0 {
			return "not a decimal number (" + quoteShort(s) + `); a decimal comma? set decimal: "," in the profile or give --decimal ,`
		}
		return "not a decimal number (" + quoteShort(s) + ")"
	}
	if s[0] == '-' && strings.Trim(intPart+frac, "0") != "" {
		return "negative (" + quoteShort(s) + ")"
	}
	if len(strings.TrimRight(frac, "0")) > 2 {
		return "more than 2 decimals (" + quoteShort(s) + ")"
	}
	if len(strings.TrimLeft(intPart, "0")) > maxIntDigits {
		return "over 9999999999.99 (" + quoteShort(s) + ")"
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkAttributes accepts a JSON object that jsonb can store: jsonb refuses \u0000 and unpaired
// UTF-16 surrogates, which encoding/json would let through (or silently replace).
func checkAttributes(s string) string {
	t := strings.TrimLeft(s, " \t\r\n")
	if t == "" || t[0] != '{' || !json.Valid([]byte(s)) {
		return "not a JSON object"
	}
	if !strings.Contains(s, `\u`) {
		return ""
	}
	inString := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			if s[i+1] != 'u' {
				i++
				continue
			}
			r := hex4(s[i+2 : i+6])
			i += 5
			switch {
			case r == 0:
				return `contains \u0000, which jsonb cannot store`
			case r >= 0xDC00 && r <= 0xDFFF:
				return "contains an unpaired UTF-16 surrogate escape"
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
					return "contains an unpaired UTF-16 surrogate escape"
				}
				if lo := hex4(s[i+3 : i+7]); lo < 0xDC00 || lo > 0xDFFF {
					return "contains an unpaired UTF-16 surrogate escape"
				}
				i += 6
			}
		}
	}
	return ""
}

// hex4 decodes four hex digits that json.Valid has already checked.
func hex4(s string) rune {
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

func quoteShort(s string) string {
	b, _ := json.Marshal(truncate(s, 40))
	return string(b)
}
