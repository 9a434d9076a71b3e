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
// PostgreSQL); each record of the drop is digested the same way as it is validated, and only
// records whose digest differs travel to the staging table and the MERGE. The text is what
// PostgreSQL prints for the typed row, and prints differ for different rows, so equal digests
// mean an unchanged row (but for a 128-bit collision). A digest the loader cannot reproduce
// exactly (attributes it does not canonicalise, a server with another byte order) only sends
// the record to the MERGE, which compares column by column as before.
//
// hashtextextended rather than sha256() or md5(): it costs the server a tenth as much per row
// (no cryptographic context per call), and no one forges collisions between a supplier's own
// old and new rows.

// digestSeed is the second hash's seed; the first is 0.
const digestSeed = 0x7469_6465_6d61_726b

// storedSQL reads a partition's products as (id, sku, digest). The row text is built once, in
// a subquery that OFFSET 0 keeps from being merged into the outer query.
const storedSQL = `SELECT id, sku, hashtextextended(t, 0), hashtextextended(t, %d) FROM (
	SELECT id, sku, row(sku, name, description, price, currency, status, attributes)::text AS t
	FROM %s OFFSET 0) r`

type digest [2]uint64

// Where a stored product stands in this drop.
const (
	unseen  uint8 = iota
	matched       // a record equal to it came, and nothing else since
	staged        // a record with its sku (or one hashing alike) went to the staging table
)

// storedRow is one product of the partition, in an open-addressing table keyed by a 64-bit hash
// of its sku: one cache line per lookup, where a Go map of a million entries costs several
// misses. Two skus hashing alike cannot corrupt a load: a record is left out only when its
// digest, which covers the sku, equals the stored row's; at worst the counts are off.
type storedRow struct {
	key   uint64 // 0: an empty slot
	sum   digest
	id    int64
	state uint8
}

// storedRows is the partition as the load found it.
type storedRows struct {
	seed  maphash.Seed
	table []storedRow // a power of two long, at most half full
	n     int
	buf   []byte
}

func newStoredRows(estimate int) *storedRows {
	size := 1024
	for size < 2*estimate {
		size *= 2
	}
	return &storedRows{seed: maphash.MakeSeed(), table: make([]storedRow, size)}
}

func (s *storedRows) keyOf(sku []byte) uint64 { return max(maphash.Bytes(s.seed, sku), 1) }

// slot returns the slot holding key, or the empty slot where it would go.
func (s *storedRows) slot(key uint64) *storedRow {
	mask := uint64(len(s.table) - 1)
	for i := key & mask; ; i = (i + 1) & mask {
		if r := &s.table[i]; r.key == key || r.key == 0 {
			return r
		}
	}
}

// add records a stored product; false means its sku's key is taken.
func (s *storedRows) add(r storedRow) bool {
	if 2*(s.n+1) > len(s.table) {
		old := s.table
		s.table = make([]storedRow, 2*len(old))
		for _, o := range old {
			if o.key != 0 {
				*s.slot(o.key) = o
			}
		}
	}
	slot := s.slot(r.key)
	if slot.key != 0 {
		return false
	}
	*slot = r
	s.n++
	return true
}

// readStored reads every product of the partition as (id, sku, digest). It returns nil when
// two skus share a key: the load then stages every record, as it cannot count right otherwise.
func readStored(ctx context.Context, tx pgx.Tx, partition string) (*storedRows, error) {
	var estimate int64
	if err := tx.QueryRow(ctx, "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass", partition).Scan(&estimate); err != nil {
		return nil, fmt.Errorf("estimate products: %w", err)
	}
	s := newStoredRows(int(estimate))
	// The digests are CPU work the server can share among parallel workers while the client
	// only files them; the planner would not pay for a Gather of a million rows unasked.
	if _, err := tx.Exec(ctx, "SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0"); err != nil {
		return nil, fmt.Errorf("set planner options: %w", err)
	}
	defer func() {
		_, _ = tx.Exec(ctx, "SET LOCAL parallel_setup_cost TO DEFAULT; SET LOCAL parallel_tuple_cost TO DEFAULT")
	}()
	rows, err := tx.Query(ctx, fmt.Sprintf(storedSQL, digestSeed, partition), pgx.QueryResultFormats{
		pgx.BinaryFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode})
	if err != nil {
		return nil, fmt.Errorf("read product digests: %w", err)
	}
	defer rows.Close()
	unique := true
	for rows.Next() {
		v := rows.RawValues()
		if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 8 {
			return nil, fmt.Errorf("read product digests: unexpected row (%d, %d, %d bytes)", len(v[0]), len(v[2]), len(v[3]))
		}
		unique = unique && s.add(storedRow{
			key: s.keyOf(v[1]),
			id:  int64(binary.BigEndian.Uint64(v[0])),
			sum: digest{binary.BigEndian.Uint64(v[2]), binary.BigEndian.Uint64(v[3])},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read product digests: %w", err)
	}
	if !unique {
		return nil, nil
	}
	return s, nil
}

// observe reports whether a valid record must go to the staging table, and whether it
// overrides an earlier record of its sku that was left out as unchanged (a duplicate the
// staging table cannot count).
func (s *storedRows) observe(row *Row) (stage, overrides bool) {
	r := s.slot(max(maphash.String(s.seed, row.SKU), 1))
	if r.key == 0 {
		return true, false // a new sku
	}
	var same bool
	if row.attrsExact {
		var sum digest
		s.buf, sum = rowDigest(s.buf[:0], row)
		same = sum == r.sum
	}
	switch {
	case same && r.state == unseen:
		r.state = matched
		return false, false
	case same && r.state == matched:
		return false, true
	default:
		// A change, or a sku already staged: the staging table orders its records, and
		// the last one wins there.
		overrides = r.state == matched
		r.state = staged
		return true, overrides
	}
}

// unmatched is the ids of the products no record matched: with a --full drop, the ones to
// delete unless the staging table names their sku (changed, or rejected but named).
func (s *storedRows) unmatched() []int64 {
	var ids []int64
	for _, r := range s.table {
		if r.key != 0 && r.state != matched {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// rowDigest is the digest the database computes in storedSQL for the row the record becomes.
func rowDigest(buf []byte, row *Row) ([]byte, digest) {
	buf = appendRowText(buf, row)
	return buf, digest{hashBytesExtended(buf, 0), hashBytesExtended(buf, digestSeed)}
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
// holds a quote, backslash, parenthesis, comma or ASCII white space, with quotes and
// backslashes doubled. NULL is the empty, unquoted field.
func appendRecordField(b []byte, s string) []byte {
	quote := s == ""
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case '"', '\\', '(', ')', ',', ' ', '\t', '\n', '\v', '\f', '\r':
			quote = true
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, s[i])
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

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
