package fakedrop_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// TestDistribution measures what the package doc and the README say of the drops, and fails
// when it drifts out of the stated ranges. `go test -run TestDistribution -v` prints it.
func TestDistribution(t *testing.T) {
	const perSupplier = 10000
	var (
		rowBytes, nameBytes, descBytes, attrBytes []int
		nameWords, descWords                      []int
		rows, nonASCIIRows, quoteRows, ampRows    int
		commaRows, runes, nonASCIIRunes           int
		keys                                      = map[string]int{}
		statuses                                  = map[string]int{}
		vocab                                     = map[string]bool{}
		skus                                      = map[string]bool{}
	)
	for _, s := range fakedrop.Suppliers {
		products := slices.Collect(fakedrop.New(s, 1).Products(perSupplier))
		var b bytes.Buffer
		if err := fakedrop.WriteCSV(&b, slices.Values(products)); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")[1:] // no newline within a record
		if len(lines) != perSupplier {
			t.Fatalf("%s: %d CSV lines, want %d", s.Name, len(lines), perSupplier)
		}
		for _, l := range lines {
			rowBytes = append(rowBytes, len(l)+1)
		}
		for _, p := range products {
			checkProduct(t, p)
			rows++
			if skus[p.SKU] {
				t.Fatalf("sku %s twice", p.SKU)
			}
			skus[p.SKU] = true
			attrs := p.Attributes.AppendJSON(nil)
			nameBytes, descBytes, attrBytes = append(nameBytes, len(p.Name)), append(descBytes, len(p.Description)), append(attrBytes, len(attrs))
			nameWords, descWords = append(nameWords, len(strings.Fields(p.Name))), append(descWords, len(strings.Fields(p.Description)))
			all := strings.Join([]string{p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Status, string(attrs)}, "\x00")
			if strings.ContainsFunc(all, func(r rune) bool { return r >= utf8.RuneSelf }) {
				nonASCIIRows++
			}
			for _, r := range all {
				runes++
				if r >= utf8.RuneSelf {
					nonASCIIRunes++
				}
			}
			if strings.Contains(p.Description, `"`) {
				quoteRows++
			}
			if strings.Contains(p.Description, ",") {
				commaRows++
			}
			if strings.Contains(p.Name+p.Description, "&") {
				ampRows++
			}
			var obj map[string]any
			if err := json.Unmarshal(attrs, &obj); err != nil {
				t.Fatalf("attributes %s: %v", attrs, err)
			}
			for k := range obj {
				keys[k]++
			}
			statuses[p.Status]++
			for _, w := range strings.FieldsFunc(strings.ToLower(p.Name+" "+p.Description), func(r rune) bool {
				return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '\''
			}) {
				if strings.ContainsFunc(w, unicode.IsLetter) {
					vocab[w] = true
				}
			}
		}
	}
	share := func(n int) float64 { return 100 * float64(n) / float64(rows) }
	t.Logf("%d products, %d suppliers, seed 1", rows, len(fakedrop.Suppliers))
	t.Logf("CSV row:     %s bytes", stats(rowBytes))
	t.Logf("name:        %s bytes, %s words", stats(nameBytes), stats(nameWords))
	t.Logf("description: %s bytes, %s words", stats(descBytes), stats(descWords))
	t.Logf("attributes:  %s bytes of JSON; keys in %% of rows: %s", stats(attrBytes), shares(keys, rows))
	t.Logf("status in %% of rows: %s", shares(statuses, rows))
	t.Logf("vocabulary:  %d distinct words in names and descriptions", len(vocab))
	t.Logf("non-ASCII:   %.1f%% of rows, %.2f%% of characters", share(nonASCIIRows), 100*float64(nonASCIIRunes)/float64(runes))
	t.Logf("descriptions with a double quote %.0f%%, a comma %.0f%%; names or descriptions with an ampersand %.0f%%",
		share(quoteRows), share(commaRows), share(ampRows))

	check := func(what string, v, lo, hi float64) {
		t.Helper()
		if v < lo || v > hi {
			t.Errorf("%s %.1f, want %.0f-%.0f", what, v, lo, hi)
		}
	}
	check("mean CSV row bytes", mean(rowBytes), 430, 530)
	check("mean name bytes", mean(nameBytes), 24, 36)
	check("mean description bytes", mean(descBytes), 260, 340)
	check("mean description words", mean(descWords), 45, 55)
	check("min description words", float64(slices.Min(descWords)), 40, 60)
	check("max description words", float64(slices.Max(descWords)), 40, 60)
	check("rows with non-ASCII (%)", share(nonASCIIRows), 5, 100)
	check("descriptions with a double quote (%)", share(quoteRows), 20, 100)
	check("descriptions with a comma (%)", share(commaRows), 80, 100)
	check("rows with an ampersand (%)", share(ampRows), 20, 100)
	check("vocabulary", float64(len(vocab)), 400, 5000)
	check("rows with a material attribute (%)", share(keys["material"]), 60, 80)
	check("active rows (%)", share(statuses["active"]), 85, 95)
	for _, k := range encoder.TextAttributes {
		if keys[k] == 0 {
			t.Errorf("no product has the attribute %q, which the encoders embed", k)
		}
	}
}

func mean(xs []int) float64 {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

// stats is "mean M (p5 A, p95 B, range C–D)".
func stats(xs []int) string {
	s := slices.Sorted(slices.Values(xs))
	p := func(q float64) int { return s[int(q*float64(len(s)-1))] }
	return fmt.Sprintf("mean %.1f (p5 %d, p95 %d, range %d–%d)", mean(xs), p(0.05), p(0.95), s[0], s[len(s)-1])
}

func shares(m map[string]int, n int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, 100*float64(m[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}
