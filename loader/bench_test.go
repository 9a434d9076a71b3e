package loader_test

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/loader"
	"golang.org/x/text/encoding/charmap"
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
		for rec := range records(b, rd) {
			if _, reason := loader.Validate(rec); reason != "" {
				b.Fatal(reason)
			}
		}
	}
}

// readDrop reads and validates a whole drop, failing on any reject but the shapes' bad record.
func readDrop(b *testing.B, drop []byte, p loader.Profile, n int) {
	rd, err := loader.OpenProfile(bytes.NewReader(drop), p)
	if err != nil {
		b.Fatal(err)
	}
	if closer, ok := rd.(io.Closer); ok {
		defer closer.Close()
	}
	read := 0
	for rec := range records(b, rd) {
		read++
		if _, reason := loader.Validate(rec); reason != "" && !strings.HasSuffix(rec.Fields[0], "BAD-1") {
			b.Fatalf("line %d: %s", rec.Line, reason)
		}
	}
	if read < n {
		b.Fatalf("%d records, want %d", read, n)
	}
}

// benchCatalogue is n of fakedrop's realistic products (the benchmarks' common rows), their
// few characters that ISO-8859-15 lacks (– ™) replaced, so every shape can write them.
func benchCatalogue(n int) []realistic {
	fit := func(s string) string {
		return strings.Map(func(r rune) rune {
			if _, ok := charmap.ISO8859_15.EncodeRune(r); !ok {
				return '-'
			}
			return r
		}, s)
	}
	var out []realistic
	for p := range fakedrop.New(fakedrop.Suppliers[0], 1).Products(n) {
		units, cents, _ := strings.Cut(p.Price, ".")
		u, _ := strconv.ParseInt(units, 10, 64)
		c, _ := strconv.ParseInt(cents, 10, 64)
		out = append(out, realistic{SKU: p.SKU, Name: fit(p.Name), Description: fit(p.Description),
			Color: fit(p.Attributes.Color), Cents: 100*u + c, WeightG: p.Attributes.WeightG})
	}
	out[2].Description += "\nSecond line." // shapeProducts' line break, which the writers' bad record counts on
	return out
}

// BenchmarkProfileOverhead reads and validates 20,000 realistic products as each shape writes
// them and, in the same iteration, the same products as tidemark's own CSV: the cost of
// re-encoding, other separators, renamed columns, decimal commas and gathered attributes,
// against the plain read. Timing the two side by side, in alternating order, keeps a busy
// machine from skewing one of them; "x-tidemark-csv" is the median ratio of their times in
// an iteration, ns/op the time of both.
func BenchmarkProfileOverhead(b *testing.B) {
	const n = 20000
	ps := benchCatalogue(n)
	type pair struct {
		name      string
		own, drop []byte
		profile   loader.Profile
	}
	var pairs []pair
	dutch := shapes[0]
	header, rows := dutch.model(ps)
	// The Dutch drop with its two attribute columns left out, against tidemark's CSV without
	// attributes: re-encoding, separators, renames and decimal commas alone.
	plain := mustProfile(b, strings.Replace(dutch.profile, "attributes:\n  Kleur: color\n  Gewicht (g): weight_g\nignore: [Voorraad]", "ignore: [Voorraad, Kleur, Gewicht (g)]", 1))
	if len(plain.Attributes) != 0 {
		b.Fatal("the profile without attributes still has some")
	}
	plain.Format = loader.CSV
	pairs = append(pairs, pair{"windows-1252-renames-decimal-comma", []byte(expectedCSV(b, ps, header, rows, dutch, plain)), dutch.write(b, header, rows), plain})
	// The same with the shape tests' rows, an accented word in every few: the decoder's worst
	// case among real text.
	dense := catalogue(n, 1)
	dh, dr := dutch.model(dense)
	pairs = append(pairs, pair{"windows-1252-renames-decimal-comma-accent-dense", []byte(expectedCSV(b, dense, dh, dr, dutch, plain)), dutch.write(b, dh, dr), plain})
	for _, s := range shapes {
		h, r := s.model(ps)
		p := mustProfile(b, s.profile)
		if p.Format == "" {
			p.Format = loader.CSV
		}
		name := map[string]string{"semicolon,": "windows-1252-semicolon-with-attributes", "tab-separated": "utf-16-tab",
			"pipe-delimited": "iso-8859-15-pipe-quote-sku", "XLSX": "xlsx"}[strings.Fields(s.name)[0]]
		pairs = append(pairs, pair{name, []byte(expectedCSV(b, ps, h, r, s, p)), s.write(b, h, r), p})
	}
	own := loader.Profile{Format: loader.CSV}
	for _, c := range pairs {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.own)))
			var ratios []float64
			i := 0
			for b.Loop() {
				var tOwn, tProfile time.Duration
				for k := 0; k < 2; k++ {
					t := time.Now()
					if (i+k)%2 == 0 {
						readDrop(b, c.own, own, n)
						tOwn = time.Since(t)
					} else {
						readDrop(b, c.drop, c.profile, n)
						tProfile = time.Since(t)
					}
				}
				ratios = append(ratios, float64(tProfile)/float64(tOwn))
				i++
			}
			// The median of the paired ratios: a burst of other work on the machine skews a
			// pair or two, not the median.
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "x-tidemark-csv")
		})
	}
}

// BenchmarkReloadRecords measures the client's work per record of a reload, the part that
// runs while the database waits: CSV parsing, validation and the row digest, on 20,000 of
// fakedrop's realistic products. cpu-ns/op is the process's CPU time (garbage collection
// included) per iteration, which a busy machine moves far less than ns/op.
func BenchmarkReloadRecords(b *testing.B) {
	var buf bytes.Buffer
	if err := fakedrop.WriteCSV(&buf, fakedrop.New(fakedrop.Suppliers[0], 1).Products(20000)); err != nil {
		b.Fatal(err)
	}
	input := buf.Bytes()
	b.SetBytes(int64(len(input)))
	var text []byte
	cpu0 := processCPU()
	for b.Loop() {
		rd, err := loader.Open(bytes.NewReader(input), loader.CSV)
		if err != nil {
			b.Fatal(err)
		}
		for rec := range records(b, rd) {
			row, reason := loader.Validate(rec)
			if reason != "" {
				b.Fatal(reason)
			}
			text, _ = loader.RowDigest(text[:0], &row)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system time the process has spent.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
