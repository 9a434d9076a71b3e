package loader

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A reload mostly repeats what the partition already holds. Before the drop streams, the
// partition is read as one digest per product (two 64-bit hashes of the row's text, computed by
// PostgreSQL); each record of the drop is digested the same way once validated, and only
// records whose digest differs travel to the staging table and the MERGE. The text is what
// PostgreSQL prints for the typed row, and prints differ for different rows, so equal digests
// mean an unchanged row (but for a 128-bit collision). A digest the loader cannot reproduce
// exactly (attributes it does not canonicalise, a server of another byte order) only sends
// the record to the MERGE, which compares column by column.
//
// hashtextextended rather than sha256() or md5(): its hashing costs the server a tenth as much
// (they set up a cryptographic context per call), and no one forges collisions between a
// supplier's own old and new rows.

// digestSeed is the second hash's seed; the first is 0.
const digestSeed = 0x7469_6465_6d61_726b

// storedSQL reads a partition's products as (id, sku, digest). The row text is built once, in
// a subquery that OFFSET 0 keeps from being merged into the outer query.
const storedSQL = `SELECT id, sku, hashtextextended(t, 0), hashtextextended(t, %d) FROM (
	SELECT id, sku, row(sku, name, description, price, currency, status, attributes)::text AS t
	FROM %s OFFSET 0) r`

type digest [2]uint64

// Where a sku stands in this drop.
const (
	unseen  uint8 = iota
	matched       // a record equal to the stored row came, and nothing else since
	staged        // a record went to the staging table, in chunk
)

// storedRow is one stored product, in an open-addressing table keyed by a 64-bit hash of its
// sku: one cache line per lookup, where a Go map of a million entries costs several misses.
// 32 bytes.
//
// Two skus hashing alike share the entry found first, and that cannot corrupt a load. A record
// is left out only when its digest, which covers the sku, equals the entry's stored row: it is
// that very product, unchanged. A record of the other sku always goes to the staging table.
// The state only ever moves towards "staged", so a sku staged once is staged again. And a
// --full load deletes only products no record matched exactly whose sku the staging table
// lacks. At worst, the counts are off. Entries of one key keep their order when the table
// grows, so the one found first stays the same.
type storedRow struct {
	key  uint64 // 0: an empty slot
	sum  digest
	pos  uint32 // 1 + the product's position in storedRows.ids
	mark uint32 // state in bits 0-1, kept in bit 2, above them the chunk of the last staged record
}

// kept marks a stored product a record matched exactly: a --full load keeps it.
const kept = 1 << 2

func (r *storedRow) state() uint8 { return uint8(r.mark & 3) }
func (r *storedRow) chunk() int32 { return int32(r.mark >> 3) }
func (r *storedRow) set(state uint8, c int32) {
	r.mark = uint32(c)<<3 | r.mark&kept | uint32(state)
}

// storedRows is the partition as the load found it, and the skus new in the drop so far.
type storedRows struct {
	seed     maphash.Seed
	table    []storedRow // a power of two long, at most 70% full
	ids      []int64     // the products' ids, in the order read: one per stored product
	estimate int64       // the planner's count of them
	fresh    *skuFilter  // skus not stored that the drop has staged: a Bloom filter, fixed size, made on the first
	buf      []byte
	warmed   uint64 // what warm read, kept so that its loads are not optimised away
}

// fits reports whether a table of size slots holds n skus.
func fits(n, size int) bool { return 10*n <= 7*size }

func newStoredRows(estimate int) *storedRows {
	size := 1024
	for !fits(estimate, size) {
		size *= 2
	}
	return &storedRows{seed: maphash.MakeSeed(), table: make([]storedRow, size), ids: make([]int64, 0, estimate)}
}

// sameKeys makes every sku hash alike (tests of the collision argument above).
var sameKeys = false

func (s *storedRows) keyOf(sku []byte) uint64 {
	if sameKeys {
		return 1
	}
	return max(maphash.Bytes(s.seed, sku), 1)
}

func (s *storedRows) keyOfString(sku string) uint64 {
	if sameKeys {
		return 1
	}
	return max(maphash.String(s.seed, sku), 1)
}

// lookup returns the first entry of key, or nil.
func (s *storedRows) lookup(key uint64) *storedRow {
	mask := uint64(len(s.table) - 1)
	for i := key & mask; ; i = (i + 1) & mask {
		switch r := &s.table[i]; r.key {
		case key:
			return r
		case 0:
			return nil
		}
	}
}

// insert puts r in the first empty slot from its key's: after the entries of the same key.
func (s *storedRows) insert(r storedRow) {
	mask := uint64(len(s.table) - 1)
	i := r.key & mask
	for s.table[i].key != 0 {
		i = (i + 1) & mask
	}
	s.table[i] = r
}

// warm reads the table slots of keys before they are used one by one. A table of a million
// products is tens of megabytes, so nearly every lookup misses the caches, and between two
// lookups the reload does enough other work (decoding a row, digesting a record) that the
// processor cannot overlap their misses. Read back to back, the misses overlap.
func (s *storedRows) warm(keys []uint64) {
	mask := uint64(len(s.table) - 1)
	x := s.warmed
	for _, k := range keys {
		x += s.table[k&mask].key
	}
	s.warmed = x
}

// add records a stored product.
func (s *storedRows) add(key uint64, id int64, sum digest) {
	if !fits(len(s.ids)+1, len(s.table)) {
		// Re-inserted from an empty slot on, so that no run of entries is cut where the
		// table wraps and the entries of one key go in in their order.
		old := s.table
		s.table = make([]storedRow, 2*len(old))
		start := 0
		for old[start].key != 0 {
			start++
		}
		for j := range old {
			if o := old[(start+j)%len(old)]; o.key != 0 {
				s.insert(o)
			}
		}
	}
	s.ids = append(s.ids, id)
	s.insert(storedRow{key: key, sum: sum, pos: uint32(len(s.ids))})
}

// readStored reads every product of the partition as (id, sku, digest).
func readStored(ctx context.Context, tx pgx.Tx, partition string) (*storedRows, error) {
	var estimate int64
	if err := tx.QueryRow(ctx, "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass", partition).Scan(&estimate); err != nil {
		return nil, fmt.Errorf("estimate products: %w", err)
	}
	// Sized for the planner's count, up to a million (a stale count can be far too high);
	// past that the table grows as the rows come.
	s := newStoredRows(int(min(estimate, 1<<20)))
	s.estimate = estimate
	// The digests are CPU work the server can share among parallel workers while the client
	// only files them; the planner would not pay for a Gather of a million rows unasked.
	planner, err := savePlanner(ctx, tx, "parallel_setup_cost", "parallel_tuple_cost")
	if err != nil {
		return nil, err
	}
	if err := planner.set(ctx, tx, "0", "0"); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(storedSQL, digestSeed, partition), pgx.QueryResultFormats{
		pgx.BinaryFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode})
	if err != nil {
		return nil, fmt.Errorf("read product digests: %w", err)
	}
	defer rows.Close()
	// Filed a run of rows at a time, the run's slots warmed first.
	const run = 256
	var (
		keys [run]uint64
		ids  [run]int64
		sums [run]digest
		n    int
	)
	file := func() {
		s.warm(keys[:n])
		for i := range n {
			s.add(keys[i], ids[i], sums[i])
		}
		n = 0
	}
	for rows.Next() {
		v := rows.RawValues()
		if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 8 {
			return nil, fmt.Errorf("read product digests: unexpected row (%d, %d, %d bytes)", len(v[0]), len(v[2]), len(v[3]))
		}
		keys[n], ids[n] = s.keyOf(v[1]), int64(binary.BigEndian.Uint64(v[0]))
		sums[n] = digest{binary.BigEndian.Uint64(v[2]), binary.BigEndian.Uint64(v[3])}
		if n++; n == run {
			file()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read product digests: %w", err)
	}
	file()
	if err := planner.restore(ctx, tx); err != nil {
		return nil, err
	}
	return s, nil
}

// verdict is what becomes of a valid record.
type verdict struct {
	stage     bool // it goes to the staging table…
	late      bool // …on the late pile: its sku's last record may be in an earlier chunk
	repeat    bool // its sku's last record is in the same chunk
	overrides bool // it overrides a record left out as unchanged (a duplicate)
}

// observe decides for a valid record, key its sku's (keyOfString), with chunk the chunk
// being filled.
func (s *storedRows) observe(row *Row, key uint64, chunk int32) verdict {
	r := s.lookup(key)
	if r == nil {
		// A new sku. One the filter may have seen staged before goes to the late pile,
		// which is applied last and in order: right whether it was a repeat or not.
		if s.fresh == nil {
			s.fresh = newSKUFilter()
		}
		return verdict{stage: true, late: s.fresh.add(row.SKU)}
	}
	var same bool
	if row.attrsExact {
		var sum digest
		s.buf, sum = rowDigest(s.buf[:0], row)
		same = sum == r.sum
	}
	switch state := r.state(); {
	case same && state == unseen:
		r.mark |= kept
		r.set(matched, 0)
		return verdict{}
	case same && state == matched:
		return verdict{overrides: true}
	case state == staged && r.chunk() != chunk:
		return verdict{stage: true, late: true}
	default:
		// A change, or a record of a sku staged in this chunk: the staging table orders
		// its records, and the last one wins there.
		r.set(staged, chunk)
		return verdict{stage: true, overrides: state == matched, repeat: state == staged}
	}
}

// unmatched is the ids of the products no record matched exactly: with a --full drop, the
// ones to delete unless the staging table names their sku (changed, or rejected but named).
func (s *storedRows) unmatched() []int64 {
	var ids []int64
	for _, r := range s.table {
		if r.key != 0 && r.mark&kept == 0 {
			ids = append(ids, s.ids[r.pos-1])
		}
	}
	return ids
}

// rowDigest is the digest the database computes in storedSQL for the row the record becomes.
func rowDigest(buf []byte, row *Row) ([]byte, digest) {
	buf = appendRowText(buf, row)
	h0, h1 := hashBytesExtended2(buf, digestSeed)
	return buf, digest{h0, h1}
}

// appendRowText appends the record text PostgreSQL prints for row(sku, name, description,
// price, currency, status, attributes) once the record is stored.
func appendRowText(b []byte, row *Row) []byte {
	b = append(b, '(')
	b = appendRecordField(b, row.SKU)
	b = append(b, ',')
	b = appendRecordField(b, row.Name)
	b = append(b, ',')
	if row.Description != nil {
		b = appendRecordField(b, *row.Description)
	}
	b = append(b, ',')
	if row.Price != nil {
		b = appendPrice(b, *row.Price)
	}
	b = append(b, ',')
	if row.Currency != nil {
		b = appendRecordField(b, *row.Currency)
	}
	b = append(b, ',')
	status := row.Status
	if status == "" {
		status = "pending"
	}
	b = appendRecordField(b, status)
	b = append(b, ',')
	b = appendRecordField(b, row.Attributes)
	return append(b, ')')
}

// appendRecordField quotes a field as record_out does: in double quotes when it is empty or
// holds a quote, backslash, parenthesis, comma or white space, with quotes and backslashes
// doubled. NULL is the empty, unquoted field. record_out asks the server locale's isspace();
// a locale that counts more bytes as space only makes digests differ, never agree wrongly.
func appendRecordField(b []byte, s string) []byte {
	quote := s == ""
	for i := 0; i < len(s); i++ {
		if recordQuoted[s[i]] {
			quote = true
			break
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	// Copied in runs between the bytes to double, found with IndexByte: every row's
	// description and attributes are quoted, and the attributes hold many quotes.
	bs := strings.IndexByte(s, '\\')
	for {
		i := strings.IndexByte(s, '"')
		if bs >= 0 && (i < 0 || bs < i) {
			i = bs
		}
		if i < 0 {
			b = append(b, s...)
			return append(b, '"')
		}
		b = append(b, s[:i+1]...)
		b = append(b, s[i])
		s = s[i+1:]
		switch {
		case i == bs:
			bs = strings.IndexByte(s, '\\')
		case bs >= 0:
			bs -= i + 1
		}
	}
}

// recordQuoted marks the bytes that make record_out quote a field.
var recordQuoted = [256]bool{'"': true, '\\': true, '(': true, ')': true, ',': true,
	' ': true, '\t': true, '\n': true, '\v': true, '\f': true, '\r': true}

// appendPrice appends a validated price as numeric(12,2) prints it: no sign, no leading zeros,
// two decimals.
func appendPrice(b []byte, p string) []byte {
	p = strings.TrimLeft(p, "+-")
	intPart, frac, _ := strings.Cut(p, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	frac = strings.TrimRight(frac, "0")
	b = append(b, intPart...)
	b = append(b, '.')
	b = append(b, frac...)
	for i := len(frac); i < 2; i++ {
		b = append(b, '0')
	}
	return b
}
