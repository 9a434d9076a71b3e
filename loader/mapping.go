package loader

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// synonyms are column names suppliers use, normalized (see normName), with the tidemark
// columns they may mean, most likely first. They are never applied on their own: detection
// proposes them, and an unknown column's error names the nearest.
var synonyms = map[string][]int{
	"artikelnummer": {colSKU}, "artikelnr": {colSKU}, "artnr": {colSKU}, "art.nr.": {colSKU}, "art.nr": {colSKU},
	"artikelcode": {colSKU}, "productcode": {colSKU}, "productnummer": {colSKU}, "itemnumber": {colSKU},
	"itemno": {colSKU}, "itemcode": {colSKU}, "item#": {colSKU}, "partnumber": {colSKU}, "code": {colSKU},
	"referentie": {colSKU}, "reference": {colSKU}, "ref": {colSKU}, "codigo": {colSKU}, "código": {colSKU},
	"artikel": {colSKU}, "article": {colSKU}, "articlenumber": {colSKU}, "productid": {colSKU}, "id": {colSKU},

	"naam": {colName}, "productnaam": {colName}, "artikelnaam": {colName}, "title": {colName}, "titel": {colName},
	"productname": {colName}, "itemname": {colName}, "nombre": {colName}, "bezeichnung": {colName},
	"omschrijving": {colName, colDescription}, "korteomschrijving": {colName},

	"beschrijving": {colDescription}, "langeomschrijving": {colDescription}, "productomschrijving": {colDescription},
	"details": {colDescription}, "descripcion": {colDescription}, "descripción": {colDescription},
	"beschreibung": {colDescription}, "longdescription": {colDescription},

	"prijs": {colPrice}, "verkoopprijs": {colPrice}, "prijsexbtw": {colPrice}, "prijsexcl.btw": {colPrice},
	"prijsinclbtw": {colPrice}, "prijsincl.btw": {colPrice}, "unitprice": {colPrice}, "precio": {colPrice},
	"preis": {colPrice}, "bedrag": {colPrice}, "amount": {colPrice}, "stukprijs": {colPrice}, "cost": {colPrice},

	"valuta": {colCurrency}, "munt": {colCurrency}, "moneda": {colCurrency}, "währung": {colCurrency},
	"waehrung": {colCurrency}, "cur": {colCurrency}, "ccy": {colCurrency},

	"staat": {colStatus}, "estado": {colStatus}, "state": {colStatus},

	"attributen": {colAttributes}, "kenmerken": {colAttributes}, "eigenschappen": {colAttributes},
	"atributos": {colAttributes}, "properties": {colAttributes},
}

// resolveHeader maps each header name to its target. Every unknown name is reported at once,
// each with the nearest known column, so one run of the load says everything to fix.
func (pl *plan) resolveHeader(header []string) ([]target, error) {
	targets := make([]target, len(header))
	seen := map[int]string{}
	var unknown []string
	for i, h := range header {
		if normName(h) == "" {
			targets[i] = target{col: toBlank}
			continue
		}
		t, ok := pl.sources[normName(h)]
		if !ok {
			unknown = append(unknown, h)
			continue
		}
		if t.col >= 0 {
			if prev, ok := seen[t.col]; ok {
				if normName(prev) == normName(h) {
					return nil, fmt.Errorf("header: column %q given twice", h)
				}
				return nil, fmt.Errorf("header: columns %q and %q both map to %s", prev, h, Columns[t.col])
			}
			seen[t.col] = h
		}
		targets[i] = t
	}
	if len(unknown) > 0 {
		return nil, pl.unknownColumns(header, unknown)
	}
	for _, need := range []int{colSKU, colName} {
		if _, ok := seen[need]; !ok && pl.constants[need] == "" {
			from := ""
			for _, t := range pl.sources {
				if t.col == need && t.from != Columns[need] {
					from = fmt.Sprintf(" (the profile maps it from %q, which the header lacks)", t.from)
				}
			}
			return nil, fmt.Errorf("header: required column %q missing%s", Columns[need], from)
		}
	}
	return targets, nil
}

// unknownColumns is the error for header names neither the profile nor tidemark knows.
func (pl *plan) unknownColumns(header, unknown []string) error {
	var b strings.Builder
	b.WriteString("header: ")
	for i, u := range unknown {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %q (nearest known: %s)", ErrUnknownColumn, u, pl.nearest(u))
	}
	if len(header) == 1 {
		if d, names := otherDelimiter(header[0], pl.delim); d != 0 {
			fmt.Fprintf(&b, "; the header looks %s-separated (%s) but the delimiter is %s: set delimiter: %s in the profile or give --delimiter %s",
				delimName(d), strings.Join(names, ", "), delimName(pl.delim), delimYAML(d), delimYAML(d))
		}
	}
	b.WriteString("; map each under columns:, attributes: or ignore: in the supplier's profile (tidemark supplier profile set ID FILE), or run tidemark load --detect FILE for a proposal")
	return &unknownColumnsError{b.String()}
}

// unknownColumnsError names every unknown column of a header; it matches ErrUnknownColumn.
type unknownColumnsError struct{ msg string }

func (e *unknownColumnsError) Error() string { return e.msg }
func (e *unknownColumnsError) Unwrap() error { return ErrUnknownColumn }

// nearest names the known column closest to an unknown name: a source the profile knows, a
// tidemark column or a name suppliers use for one.
func (pl *plan) nearest(name string) string {
	n := normName(name)
	best, bestD := "", 1<<30
	consider := func(cand, label string) {
		if d := editDistance(n, cand); d < bestD || d == bestD && label < best {
			best, bestD = label, d
		}
	}
	for src, t := range pl.sources {
		switch {
		case t.col >= 0 && t.from == Columns[t.col]:
			consider(src, Columns[t.col])
		case t.col >= 0:
			consider(src, fmt.Sprintf("%q → %s", t.from, Columns[t.col]))
		case t.col == toAttribute:
			consider(src, fmt.Sprintf("%q → attributes.%s", t.from, t.attr))
		default:
			consider(src, fmt.Sprintf("%q (ignored)", t.from))
		}
	}
	for syn, cols := range synonyms {
		consider(syn, Columns[cols[0]])
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// otherDelimiter reports the delimiter a one-field header splits on, when another one splits it.
func otherDelimiter(h string, current rune) (rune, []string) {
	for _, d := range []rune{';', '\t', '|', ','} {
		if d == current || !strings.ContainsRune(h, d) {
			continue
		}
		names := strings.Split(h, string(d))
		for i := range names {
			names[i] = strings.TrimSpace(strings.Trim(names[i], `"`))
		}
		return d, names
	}
	return 0, nil
}

func delimName(d rune) string {
	if d == '\t' {
		return "tab"
	}
	return fmt.Sprintf("%q", string(d))
}

func delimYAML(d rune) string {
	if d == '\t' {
		return "tab"
	}
	return fmt.Sprintf("'%c'", d)
}

// attrValue is a source column gathered into attributes.
type attrValue struct {
	key, val string
	num      bool // a number or boolean cell of a spreadsheet: a JSON number, true or false
	json     bool // an NDJSON value other than a string: JSON as the drop wrote it
}

// finish applies the profile to a record whose fields are placed: prices to plain decimals,
// the sku trimmed and prefixed, constants, gathered attributes. A value that cannot be read
// the profile's way rejects the record with its reason. priceNum says the price came from a
// number cell, which needs no separators read.
func (pl *plan) finish(rec *Record, attrs []attrValue, priceNum bool, buf []byte) []byte {
	f := &rec.Fields
	fail := func(reason string) {
		if rec.Reason == "" {
			rec.Reason = reason
		}
	}
	if pl.skuTrim {
		f[colSKU] = strings.TrimSpace(f[colSKU])
	}
	if pl.skuPrefix != "" && f[colSKU] != "" {
		f[colSKU] = pl.skuPrefix + f[colSKU]
	}
	if pl.hasConst {
		for i, c := range pl.constants {
			if c != "" && f[i] == "" {
				f[i] = c
			}
		}
	}
	if p := f[colPrice]; p != "" && !priceNum && (pl.decimal != '.' || pl.thousands != 0) {
		v, reason := pl.normPrice(p)
		if reason != "" {
			fail("price: " + reason)
		}
		f[colPrice] = v
	}
	if len(attrs) > 0 {
		var reason string
		buf, reason = buildAttributes(rec, attrs, buf)
		if reason != "" {
			fail(reason)
		}
	}
	return buf
}

// normPrice rewrites a price written with the profile's decimal and thousands separators as a
// plain decimal; what cannot be read that way is a reason, never a guess. It is called only
// when the profile sets a decimal comma or a thousands separator.
func (pl *plan) normPrice(s string) (string, string) {
	sign, body := "", s
	if body[0] == '-' || body[0] == '+' {
		sign, body = body[:1], body[1:]
	}
	intPart, frac, hasDec := body, "", false
	if i := strings.LastIndexByte(body, pl.decimal); i >= 0 {
		intPart, frac, hasDec = body[:i], body[i+1:], true
	}
	if pl.thousands != 0 && strings.IndexByte(intPart, pl.thousands) >= 0 {
		digits := make([]byte, 0, len(intPart))
		for i, g := 0, intPart; ; i++ {
			head, rest, more := strings.Cut(g, string(pl.thousands))
			if (i == 0 && (len(head) == 0 || len(head) > 3)) || (i > 0 && len(head) != 3) {
				return s, fmt.Sprintf("%s has thousands separators %q that are not between groups of three digits", quoteShort(s), string(pl.thousands))
			}
			digits = append(digits, head...)
			if !more {
				break
			}
			g = rest
		}
		intPart = string(digits)
	}
	if !allDigits(intPart) || !allDigits(frac) || intPart == "" && frac == "" {
		other := byte('.')
		if pl.decimal == '.' {
			other = ','
		}
		if pl.thousands != other && strings.IndexByte(body, other) >= 0 {
			return s, fmt.Sprintf("not a decimal number (%s): it has a %q, but the decimal separator is %q%s", quoteShort(s), string(other), string(pl.decimal), thousandsNote(pl.thousands))
		}
		return s, "not a decimal number (" + quoteShort(s) + ")"
	}
	if !hasDec {
		return sign + intPart, ""
	}
	return sign + intPart + "." + frac, ""
}

func thousandsNote(t byte) string {
	if t == 0 {
		return " and no thousands separator is set"
	}
	return fmt.Sprintf(" and the thousands separator %q", string(t))
}

// buildAttributes writes the gathered values into the attributes field, as jsonb prints the
// object (so a reload compares it without the database), merged with an attributes column
// the drop may have as well. A key in both rejects the record.
func buildAttributes(rec *Record, attrs []attrValue, buf []byte) ([]byte, string) {
	vals := attrs[:0] // filtered in place: the caller's slice is scratch
	for _, a := range attrs {
		if a.val == "" {
			continue // an empty cell is no attribute
		}
		if reason := checkText(a.val); reason != "" {
			return buf, fmt.Sprintf("attributes: %s: %s", a.key, reason)
		}
		vals = append(vals, a)
	}
	if len(vals) == 0 {
		return buf, ""
	}
	var members map[string]json.RawMessage
	if own := rec.Fields[colAttributes]; own != "" {
		if reason := checkAttributes(own); reason != "" {
			return buf, "attributes: " + reason
		}
		if err := json.Unmarshal([]byte(own), &members); err != nil {
			return buf, "attributes: not a JSON object"
		}
		for _, a := range vals {
			if _, ok := members[a.key]; ok {
				return buf, fmt.Sprintf("attributes: key %q is both in the attributes column and gathered from a column", a.key)
			}
		}
	}
	slices.SortStableFunc(vals, func(a, b attrValue) int {
		switch {
		case keyLess(a.key, b.key):
			return -1
		case keyLess(b.key, a.key):
			return 1
		}
		return 0
	})
	exact := true
	buf = append(buf[:0], '{')
	for i, a := range vals {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendJSONBString(buf, a.key)
		buf = append(buf, ": "...)
		switch {
		case a.num || a.json:
			buf = append(buf, a.val...)
			exact = exact && !a.json // jsonb prints nested JSON its own way
		default:
			buf = appendJSONBString(buf, a.val)
		}
	}
	buf = append(buf, '}')
	if members == nil {
		rec.Fields[colAttributes], rec.attrsExact = string(buf), exact
		return buf, ""
	}
	// Merged with the column's own object: the canonical form of both together.
	var merged bytes.Buffer
	merged.Write(buf[:len(buf)-1])
	for k, v := range members {
		merged.WriteString(", ")
		kb, _ := json.Marshal(k)
		merged.Write(kb)
		merged.WriteString(": ")
		merged.Write(v)
	}
	merged.WriteByte('}')
	rec.Fields[colAttributes] = merged.String()
	return buf, ""
}

// rawObject writes a record as a JSON object of source name → value, for the rejects file.
func rawObject(header, fields []string) json.RawMessage {
	if fields == nil {
		return json.RawMessage("null")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	var extra []string
	for i, f := range fields {
		if i >= len(header) {
			extra = append(extra, f)
			continue
		}
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, header[i])
		b.WriteByte(':')
		writeJSONString(&b, f)
	}
	if extra != nil {
		if len(fields) > len(extra) {
			b.WriteByte(',')
		}
		b.WriteString(`"_extra":`)
		e, _ := json.Marshal(extra)
		b.Write(e)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// blankReason is the reason for a record with a value in a column the header leaves unnamed.
func blankReason(i int) string {
	return fmt.Sprintf("record: a value in column %d, which has no name in the header", i+1)
}
