package loader

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Profile describes how one supplier sends its drops, so that a daily load needs no flags:
// the syntax, the encoding, how prices are written and what the columns are called. The zero
// Profile is tidemark's own drop: UTF-8, comma-separated, tidemark's column names. Each key is
// also a `tidemark load` flag of the same name, which overrides the stored profile for one load.
type Profile struct {
	// Format is csv, ndjson or xlsx (default: from the file name, else csv).
	Format Format `yaml:"format,omitempty"`
	// Sheet is the XLSX sheet to read (default: the first).
	Sheet string `yaml:"sheet,omitempty"`
	// Delimiter separates CSV fields: one ASCII character such as , ; | or "tab" (default ,).
	Delimiter string `yaml:"delimiter,omitempty"`
	// Quote is the CSV quote character (default "); a doubled quote inside quotes is one.
	Quote string `yaml:"quote,omitempty"`
	// Encoding is utf-8, windows-1252, iso-8859-1, iso-8859-15 or utf-16 (with a byte-order
	// mark). Unset, the drop must be UTF-8, and one that is not stops the load naming the
	// likely encoding; set to utf-8, a record that is not is rejected on its own.
	Encoding string `yaml:"encoding,omitempty"`
	// Decimal is the decimal separator of prices, . or , (default .).
	Decimal string `yaml:"decimal,omitempty"`
	// Thousands is an optional group separator of prices (. , space or '), only accepted
	// between groups of three digits.
	Thousands string `yaml:"thousands,omitempty"`
	// Columns maps the drop's column names (case and spaces ignored) to tidemark's columns.
	Columns map[string]string `yaml:"columns,omitempty"`
	// Ignore lists the drop's columns that are not loaded.
	Ignore []string `yaml:"ignore,omitempty"`
	// Attributes gathers drop columns into the attributes object: column name → key.
	Attributes map[string]string `yaml:"attributes,omitempty"`
	// Constants fill a tidemark column where the drop leaves it empty or lacks it, such as a
	// currency for a supplier that never sends one. Not the sku.
	Constants map[string]string `yaml:"constants,omitempty"`
	// SKUPrefix is prepended to every sku (after SKUTrim).
	SKUPrefix string `yaml:"sku_prefix,omitempty"`
	// SKUTrim removes white space around each sku.
	SKUTrim bool `yaml:"sku_trim,omitempty"`
}

// ParseProfile reads a profile from YAML. Unknown keys are an error, so a misspelt key does not
// silently fall back to a default.
func ParseProfile(r io.Reader) (Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Profile{}, fmt.Errorf("%w: %w", ErrBadProfile, err)
	}
	if _, err := p.compile(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Validate reports what makes p unusable, if anything.
func (p Profile) Validate() error {
	_, err := p.compile()
	return err
}

// Override returns p with every key that o sets replacing p's: o is a one-off on top of a
// supplier's stored profile. Map keys and ignored columns are added to p's.
func (p Profile) Override(o Profile) Profile {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if o.Format != "" {
		p.Format = o.Format
	}
	set(&p.Sheet, o.Sheet)
	set(&p.Delimiter, o.Delimiter)
	set(&p.Quote, o.Quote)
	set(&p.Encoding, o.Encoding)
	set(&p.Decimal, o.Decimal)
	set(&p.Thousands, o.Thousands)
	set(&p.SKUPrefix, o.SKUPrefix)
	p.SKUTrim = p.SKUTrim || o.SKUTrim
	merge := func(a, b map[string]string) map[string]string {
		if len(b) == 0 {
			return a
		}
		out := make(map[string]string, len(a)+len(b))
		for k, v := range a {
			out[k] = v
		}
		for k, v := range b {
			// The one-off wins over the stored mapping of the same source column.
			for ok := range out {
				if normName(ok) == normName(k) {
					delete(out, ok)
				}
			}
			out[k] = v
		}
		return out
	}
	p.Columns = merge(p.Columns, o.Columns)
	p.Attributes = merge(p.Attributes, o.Attributes)
	p.Constants = merge(p.Constants, o.Constants)
	if len(o.Ignore) > 0 {
		p.Ignore = append(append([]string(nil), p.Ignore...), o.Ignore...)
	}
	return p
}

// target is where a source column goes: a tidemark column, a key of attributes, or nowhere.
type target struct {
	col  int    // a column index, or toAttribute, or toIgnore
	attr string // the attributes key, with toAttribute
	from string // how the source is known: its name in the profile, or the column's own
}

const (
	toIgnore    = -1
	toAttribute = -2
	toBlank     = -3 // a column without a name in the header: it must stay empty
)

// plan is a profile checked and compiled for reading.
type plan struct {
	format    Format
	sheet     string
	delim     rune
	quote     byte
	enc       *charset // nil: UTF-8
	encSet    bool     // the encoding was named (utf-8 included)
	decimal   byte
	thousands byte
	sources   map[string]target // normalized source name → target
	constants [numColumns]string
	hasConst  bool
	skuPrefix string
	skuTrim   bool
	// plain means records need nothing beyond placing fields: tidemark's own columns (maybe
	// renamed), no attributes gathered, no constants, prices with a decimal point.
	plain bool
}

func badProfile(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadProfile, fmt.Sprintf(format, args...))
}

func (p Profile) compile() (*plan, error) {
	pl := &plan{format: p.Format, sheet: p.Sheet, delim: ',', quote: '"', decimal: '.', sources: map[string]target{},
		skuPrefix: p.SKUPrefix, skuTrim: p.SKUTrim}
	switch p.Format {
	case "", CSV, NDJSON, XLSX:
	default:
		return nil, badProfile("format %q: want csv, ndjson or xlsx", p.Format)
	}
	if p.Sheet != "" && p.Format != "" && p.Format != XLSX {
		return nil, badProfile("sheet %q is for xlsx drops, the format is %s", p.Sheet, p.Format)
	}
	if p.Format == XLSX && (p.Delimiter != "" || p.Quote != "" || p.Encoding != "") {
		return nil, badProfile("delimiter, quote and encoding are for csv and ndjson drops, the format is xlsx")
	}
	if p.Delimiter != "" {
		d, err := delimiterOf(p.Delimiter)
		if err != nil {
			return nil, err
		}
		pl.delim = d
	}
	if p.Quote != "" {
		if len(p.Quote) != 1 || p.Quote[0] < ' ' || p.Quote[0] > '~' || isAlnum(p.Quote[0]) {
			return nil, badProfile("quote %q: want one ASCII punctuation character", p.Quote)
		}
		pl.quote = p.Quote[0]
	}
	if rune(pl.quote) == pl.delim {
		return nil, badProfile("the delimiter and the quote are both %q", string(pl.delim))
	}
	if p.Encoding != "" {
		cs, err := charsetOf(p.Encoding)
		if err != nil {
			return nil, err
		}
		pl.enc, pl.encSet = cs, true
	}
	switch p.Decimal {
	case "", ".":
	case ",":
		pl.decimal = ','
	default:
		return nil, badProfile("decimal %q: want . or ,", p.Decimal)
	}
	switch p.Thousands {
	case "":
	case ".", ",", " ", "'":
		pl.thousands = p.Thousands[0]
		if pl.thousands == pl.decimal {
			return nil, badProfile("decimal and thousands are both %q", p.Thousands)
		}
	default:
		return nil, badProfile("thousands %q: want . , ' or a space", p.Thousands)
	}

	add := func(src string, t target) error {
		n := normName(src)
		if n == "" {
			return badProfile("an empty column name")
		}
		if old, ok := pl.sources[n]; ok {
			return badProfile("column %q is given twice (as %q and %q)", src, old.from, src)
		}
		t.from = src
		pl.sources[n] = t
		return nil
	}
	mapped := map[int]string{}
	for _, src := range sortedKeys(p.Columns) {
		col := columnIndex(strings.ToLower(strings.TrimSpace(p.Columns[src])))
		if col < 0 {
			return nil, badProfile("columns: %q → %q: %q is not a tidemark column (%s)", src, p.Columns[src], p.Columns[src], strings.Join(Columns[:], ", "))
		}
		if prev, ok := mapped[col]; ok {
			return nil, badProfile("columns: both %q and %q map to %s", prev, src, Columns[col])
		}
		mapped[col] = src
		if err := add(src, target{col: col}); err != nil {
			return nil, err
		}
	}
	for _, src := range p.Ignore {
		if err := add(src, target{col: toIgnore}); err != nil {
			return nil, err
		}
	}
	keys := map[string]string{}
	for _, src := range sortedKeys(p.Attributes) {
		key := p.Attributes[src]
		if key == "" {
			return nil, badProfile("attributes: %q has no key", src)
		}
		if prev, ok := keys[key]; ok {
			return nil, badProfile("attributes: both %q and %q are gathered as %q", prev, src, key)
		}
		keys[key] = src
		if err := add(src, target{col: toAttribute, attr: key}); err != nil {
			return nil, err
		}
	}
	// A tidemark column name maps to itself unless the profile says otherwise: a supplier
	// may mix its own names with ours.
	for i, c := range Columns {
		if _, ok := pl.sources[c]; !ok {
			if _, ok := mapped[i]; !ok {
				pl.sources[c] = target{col: i, from: c}
			}
		}
	}
	for _, col := range sortedKeys(p.Constants) {
		i := columnIndex(strings.ToLower(strings.TrimSpace(col)))
		switch {
		case i < 0:
			return nil, badProfile("constants: %q is not a tidemark column (%s)", col, strings.Join(Columns[:], ", "))
		case i == colSKU:
			return nil, badProfile("constants: a constant sku would make every record the same product")
		}
		v := p.Constants[col]
		if reason := checkConstant(i, v); reason != "" {
			return nil, badProfile("constants: %s %q: %s", Columns[i], v, reason)
		}
		pl.constants[i], pl.hasConst = v, true
	}
	pl.plain = len(p.Attributes) == 0 && !pl.hasConst && pl.decimal == '.' && pl.thousands == 0 &&
		pl.skuPrefix == "" && !pl.skuTrim
	return pl, nil
}

// checkConstant validates a constant as a record's field would be, so a bad one fails when
// the profile is set rather than reject every record.
func checkConstant(col int, v string) string {
	rec := Record{Line: 1}
	rec.Fields[colSKU], rec.Fields[colName] = "x", "x"
	rec.Fields[col] = v
	if _, reason := Validate(&rec); reason != "" {
		return reason
	}
	return ""
}

func delimiterOf(s string) (rune, error) {
	switch strings.ToLower(s) {
	case "tab", `\t`, "\t":
		return '\t', nil
	}
	if len(s) != 1 || s[0] < ' ' || s[0] > '~' || isAlnum(s[0]) {
		return 0, badProfile("delimiter %q: want one ASCII punctuation character, a space or tab", s)
	}
	return rune(s[0]), nil
}

func isAlnum(c byte) bool { return isLetter(c) || c >= '0' && c <= '9' }

// normName is how source column names compare: case and white space do not count.
func normName(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '\ufeff' {
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
