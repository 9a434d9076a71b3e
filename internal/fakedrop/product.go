package fakedrop

import (
	"iter"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Product is one generated product, as a drop carries it.
type Product struct {
	SKU         string     `json:"sku"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Price       string     `json:"price"` // two decimals, as numeric(12,2) prints it
	Currency    string     `json:"currency"`
	Status      string     `json:"status"`
	Attributes  Attributes `json:"attributes"`
}

// Attributes is a product's attributes object. Brand, category, color, material and tags
// are the keys the encoders embed (encoder.TextAttributes); the weight is logistics. A
// product has no material in three cases out of ten.
type Attributes struct {
	Brand    string   `json:"brand"`
	Category string   `json:"category"`
	Color    string   `json:"color"`
	Material string   `json:"material,omitempty"`
	Tags     []string `json:"tags"`
	WeightG  int      `json:"weight_g"`
}

// Drop generates the products of one supplier. Product i depends only on the seed, the
// supplier and i: not on how many are generated nor in what order, so a later drop of the
// supplier (a reload) is made from the first by index.
type Drop struct {
	s    *Supplier
	seed uint64
}

// New returns the generator of s's products for seed.
func New(s Supplier, seed uint64) *Drop { return &Drop{s: &s, seed: seed} }

// Supplier is the supplier whose products d generates.
func (d *Drop) Supplier() Supplier { return *d.s }

// Products yields products 0 to n-1.
func (d *Drop) Products(n int) iter.Seq[Product] { return d.Range(0, n) }

// Range yields products from to to-1: more of the supplier's products, after a first drop of
// from.
func (d *Drop) Range(from, to int) iter.Seq[Product] {
	return func(yield func(Product) bool) {
		for i := from; i < to; i++ {
			if !yield(d.Product(i)) {
				return
			}
		}
	}
}

// Reload yields products 0 to n-1 as a later drop has them: pct percent of them (exactly
// pct of every 100 consecutive indexes, spread out; see [IsChanged]) as [Drop.Changed]
// returns them, the others as they were.
func (d *Drop) Reload(n, pct int) iter.Seq[Product] {
	return func(yield func(Product) bool) {
		for i := range n {
			p := d.Product(i)
			if IsChanged(i, pct) {
				p = d.change(i, p)
			}
			if !yield(p) {
				return
			}
		}
	}
}

// IsChanged says whether product i differs in a reload with pct percent changed.
func IsChanged(i, pct int) bool {
	// 37 is prime to 100: every run of 100 indexes has pct changed ones, none adjacent.
	return (i*37+11)%100 < pct
}

// Parts of a product, each drawn from a random stream of its own: a change re-draws one
// part and leaves the others as they were.
const (
	partFacts = iota
	partName
	partDescription
	partPrice
	partChange
)

// rng is the random stream of one part of product i; variant 0 is the first drop's.
func (d *Drop) rng(i, part, variant int) *rand.Rand {
	row := mix(mix(d.seed^uint64(d.s.ID)<<48) + uint64(i))
	return rand.New(rand.NewPCG(row, mix(row^uint64(part)<<32^uint64(variant))))
}

// mix is splitmix64's finaliser: neighbouring seeds give unrelated streams.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// facts are what a product is; its name, description and attributes are written from them.
type facts struct {
	k                    kind
	brand                string
	adj, adj2            string
	material, color, use string
	tags                 []string
	listed               bool // the material is in the attributes
}

func (d *Drop) facts(i int) facts {
	r, s := d.rng(i, partFacts, 0), d.s
	f := facts{k: s.kinds[r.IntN(len(s.kinds))], brand: pick(r, s.brands), color: pick(r, s.colors), use: pick(r, s.uses)}
	f.adj, f.adj2 = pick2(r, s.adjectives)
	f.tags = []string{f.adj, f.use}[:1+r.IntN(2)]
	f.material = pick(r, f.k.materials)
	// Suppliers leave attributes out: the material is in the description only, then.
	f.listed = r.IntN(10) < 7
	return f
}

// Product returns product i (0-based; its sku carries i+1).
func (d *Drop) Product(i int) Product {
	s := d.s
	f := d.facts(i)
	r := d.rng(i, partFacts, 1) // the row's logistics
	var material string
	if f.listed {
		material = f.material
	}
	status := "active"
	switch n := r.IntN(100); {
	case n < 7:
		status = "pending"
	case n < 10:
		status = "discontinued"
	}
	return Product{
		SKU:         s.prefix + "-" + pad6(i+1),
		Name:        d.name(f, d.rng(i, partName, 0)),
		Description: d.description(f, d.rng(i, partDescription, 0)),
		Price:       price(f.k, d.rng(i, partPrice, 0)),
		Currency:    s.Currency,
		Status:      status,
		Attributes: Attributes{Brand: f.brand, Category: f.k.category, Color: f.color, Material: material, Tags: f.tags,
			WeightG: 100 + r.IntN(3900)},
	}
}

// Changed returns product i as a later drop has it: a new price (half of the changes), a new
// name (a quarter) or a new description (a quarter), always different from [Drop.Product]'s.
func (d *Drop) Changed(i int) Product { return d.change(i, d.Product(i)) }

func (d *Drop) change(i int, p Product) Product {
	r := d.rng(i, partChange, 0)
	switch n := r.IntN(4); {
	case n < 2:
		old, _ := strconv.ParseFloat(p.Price, 64)
		p.Price = another(p.Price, addCent(p.Price), func(int) string { return shopPrice(old*(0.85+0.3*r.Float64()), r) })
	case n == 2:
		f := d.facts(i)
		p.Name = another(p.Name, p.Name+" II", func(v int) string { return d.name(f, d.rng(i, partName, v)) })
	default:
		f := d.facts(i)
		p.Description = another(p.Description, p.Description+" Now improved.", func(v int) string {
			return d.description(f, d.rng(i, partDescription, v))
		})
	}
	return p
}

// another returns the first of variants 1 to 8 that differs from cur, else fallback.
func another(cur, fallback string, variant func(v int) string) string {
	for v := 1; v <= 8; v++ {
		if s := variant(v); s != cur {
			return s
		}
	}
	return fallback
}

var lines = []string{"Pro", "Lite", "Plus", "Max", "Evo", "Trail", "Classic", "Sport"}

// name is 3 to 5 words: a brand, a model line or an adjective, and the kind of product.
func (d *Drop) name(f facts, r *rand.Rand) string {
	line := string(rune('A'+r.IntN(26))) + strconv.Itoa(10+r.IntN(90))
	if r.IntN(3) == 0 {
		line = pick(r, lines)
	}
	noun := titleCase(f.k.noun)
	var parts []string
	switch r.IntN(4) {
	case 0:
		parts = []string{f.brand, line, noun}
	case 1:
		parts = []string{f.brand, capitalize(f.adj), noun}
	case 2:
		parts = []string{f.brand, noun, line}
	default:
		parts = []string{capitalize(f.adj), noun, line}
	}
	name := strings.Join(parts, " ")
	if words(name) > 5 { // a long brand and a long noun: the brand goes
		name = capitalize(f.adj) + " " + noun + " " + line
	}
	return name
}

var warranty = []func(years string) string{
	func(y string) string {
		return "It comes with a " + y + "-year warranty – and free repairs after that."
	},
	func(y string) string { return "It comes with a " + y + "-year warranty and free repairs after that." },
	func(y string) string { return "Backed by our " + y + "-year warranty, with spare parts for ten years." },
}

var reviewers = []string{"Anja K.", "José M.", "Chloé R.", "Søren B.", "Mike T.", "Zoë L.", "Łukasz W.", "Priya S.", "Tom H.", "Inès D."}

// description is 40 to 60 words: an opening sentence, then sentences about the product's
// features, specification, reviews, care, origin, colours, warranty and uses in an order of
// its own, until it has its drawn number of words.
func (d *Drop) description(f facts, r *rand.Rand) string {
	s := d.s
	target := 40 + r.IntN(12) // a sentence past it ends up to 60
	noun := f.k.noun
	var first string
	a, this, is := article(f.adj), "this", "is"
	if strings.HasSuffix(noun, "s") { // boots, runners, headphones
		a, this, is = "", "these", "are"
	}
	switch r.IntN(3) {
	case 0:
		first = capitalize(a+f.adj) + ", " + f.adj2 + " " + noun + " in " + f.material + ", made for " + f.use + "."
	case 1:
		first = "From " + f.brand + ": " + a + f.adj + " & " + f.adj2 + " " + noun + ", cut from " + f.material + " for " + f.use + "."
	default:
		first = capitalize(f.adj) + " and " + f.adj2 + ": " + this + " " + noun + " in " + f.material + " " + is + " built for " + f.use + "."
	}
	f1, f2 := pick2(r, s.features)
	c2, c3 := pick2Other(r, s.colors, f.color)
	u2, u3 := pick2Other(r, s.uses, f.use)
	years := strconv.Itoa(1 + r.IntN(5))
	var quote string
	switch q := pick(r, s.quotes); r.IntN(3) {
	case 0:
		quote = `"` + q + `," says one reviewer.`
	case 1:
		quote = `Customers call it "` + strings.ToLower(q[:1]) + q[1:] + `".`
	default:
		quote = `"` + q + `" (` + pick(r, reviewers) + `, verified buyer).`
	}
	rest := []string{
		"It has " + f1 + " and " + f2 + ".",
		s.spec(r, f.k),
		quote,
		pick(r, s.care),
		pick(r, s.origins),
		capitalize(f.color) + " finish; also available in " + c2 + " & " + c3 + ".",
		warranty[r.IntN(len(warranty))](years),
		"Ideal for " + f.use + ", " + u2 + " or " + u3 + ".",
	}
	r.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	var b strings.Builder
	b.Grow(400)
	b.WriteString(first)
	count := words(first)
	for _, sentence := range rest {
		if count >= target {
			break
		}
		n := words(sentence)
		if count+n > 60 {
			if count >= 40 {
				break
			}
			continue // under 40, a shorter one comes (no sentence is over 20 words)
		}
		b.WriteByte(' ')
		b.WriteString(sentence)
		count += n
	}
	return b.String()
}

// price draws a price in the kind's range.
func price(k kind, r *rand.Rand) string {
	return shopPrice(k.minPrice+r.Float64()*(k.maxPrice-k.minPrice), r)
}

// shopPrice rounds v the way shop prices end: mostly .99, else .95, .50 or .00.
func shopPrice(v float64, r *rand.Rand) string {
	units := max(1, int(v))
	cents := 99
	switch n := r.IntN(10); {
	case n < 2:
		cents = 95
	case n < 4:
		cents = 0
	case n < 5:
		cents = 50
	}
	return strconv.Itoa(units) + "." + pad2(cents)
}

// addCent adds one cent to a price of two decimals.
func addCent(p string) string {
	units, cents, _ := strings.Cut(p, ".")
	u, _ := strconv.Atoi(units)
	c, _ := strconv.Atoi(cents)
	c++
	return strconv.Itoa(u+c/100) + "." + pad2(c%100)
}

func pick(r *rand.Rand, xs []string) string { return xs[r.IntN(len(xs))] }

// pick2 picks two different elements.
func pick2(r *rand.Rand, xs []string) (string, string) {
	i := r.IntN(len(xs))
	j := (i + 1 + r.IntN(len(xs)-1)) % len(xs)
	return xs[i], xs[j]
}

// article is the indefinite article of a singular noun phrase starting with word, and a space.
func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an "
	}
	return "a "
}

// pick2Other picks two different elements other than x (which xs holds once at most).
func pick2Other(r *rand.Rand, xs []string, x string) (string, string) {
	for {
		a, b := pick2(r, xs)
		if a != x && b != x {
			return a, b
		}
	}
}

// words counts the words of s as strings.Fields would, for ASCII spaces.
func words(s string) int {
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			in = false
		} else if !in {
			in = true
			n++
		}
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

func pad6(n int) string {
	s := strconv.Itoa(n)
	if len(s) < 6 {
		s = strings.Repeat("0", 6-len(s)) + s
	}
	return s
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func titleCase(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = capitalize(w)
	}
	return strings.Join(words, " ")
}
