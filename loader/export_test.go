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

// Skipped is how many valid records a load left out as equal to their stored row.
func Skipped(r Result) int64 { return r.skipped }

// HashBytesExtended exposes the client's copy of PostgreSQL's hash_bytes_extended.
var HashBytesExtended = hashBytesExtended
