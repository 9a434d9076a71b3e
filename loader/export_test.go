package loader

// SetFilterBits resizes the sku filter (tests use a tiny one to provoke false positives) and
// returns a function that restores it.
func SetFilterBits(n uint64) func() {
	old := filterBits
	filterBits = n
	return func() { filterBits = old }
}

// CanonicalJSON exposes canonicalJSON to the tests.
var CanonicalJSON = canonicalJSON
