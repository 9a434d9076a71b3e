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

// HashBytesExtended2 exposes the pair of hashes a reload digests each record with.
var HashBytesExtended2 = hashBytesExtended2

// SetChunkRows sets how many staged rows make a reload chunk and returns a function that
// restores it.
func SetChunkRows(n int) func() {
	old := chunkRows
	chunkRows = n
	return func() { chunkRows = old }
}

// SetSameKeys makes every sku hash alike in the reload's table and returns a function that
// undoes it.
func SetSameKeys() func() {
	sameKeys = true
	return func() { sameKeys = false }
}

// RowDigest exposes the digest a reload computes of a valid record.
var RowDigest = rowDigest

// AppendRecordField exposes the record_out quoting of the reload's row text.
var AppendRecordField = appendRecordField
