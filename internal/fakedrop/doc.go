// Package fakedrop generates realistic supplier drops, deterministically: the products of the
// demo and of every benchmark stage, and the writers of their CSV, NDJSON and gzipped files.
//
//	d := fakedrop.New(fakedrop.Suppliers[0], seed)
//	err := fakedrop.WriteFile("drop.csv.gz", d.Products(n))
//	err = fakedrop.WriteFile("reload.csv", d.Reload(n, 10)) // 10% changed
//
// Product i is a pure function of the seed, the supplier and i, so a drop can be generated
// again (a reload, a check) without keeping it, and two runs of a benchmark load the same bytes.
//
// # Distribution
//
// Three suppliers of different trades (outdoor gear in EUR, kitchenware in EUR, electronics in
// USD), each with its own brands, kinds of product, materials, colours, uses, features, review
// quotes, care and origin sentences. Measured over 30,000 products (10,000 per supplier, seed 1)
// by TestDistribution, which fails when they leave the ranges it states
// (`go test ./internal/fakedrop -run TestDistribution -v` prints them):
//
//   - CSV row: mean 501 bytes (p5 443, p95 561), header excluded, quoting included.
//   - name: 3–5 words (mean 3.9), mean 27 bytes (p5 19, p95 36): a brand, a model line or an
//     adjective, and the kind of product ("Ridgeline K42 Hiking Jacket").
//   - description: 40–60 words (mean 50), mean 294 bytes (p5 246, p95 343): sentences in an
//     order of their own, with commas (98% of rows), double quotes (49%: review quotes) and
//     ampersands (78% of names or descriptions).
//   - non-ASCII: 76% of rows have some (Fjellrø, Crème & Co, Señal, Zürich, Tromsø, °C, ×, –,
//     Ø, ®), 0.33% of characters; every field is valid UTF-8.
//   - vocabulary: about 3,000 distinct words in names and descriptions.
//   - price: two decimals in each kind's range, ending mostly in .99 (else .95, .50, .00);
//     currency per supplier; status active 90%, pending 7%, discontinued 3%.
//   - attributes: mean 122 bytes of JSON, keys brand, category, color, tags (1–2) and weight_g
//     in every row, material in 70% (the encoders embed brand, category, color, material and
//     tags; weight_g is logistics).
//
// A reload ([Drop.Reload]) changes exactly pct of every 100 consecutive products: half of the
// changes a new price (±15%), a quarter a new name, a quarter a new description.
package fakedrop
