package encoder

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/event"
)

// Store is the vector table, product_embeddings.
type Store struct {
	pool *pgxpool.Pool
	// vector is true when the embedding column is pgvector's vector rather than real[];
	// vectorOID is then its type's OID, whose binary format COPY sends.
	vector    bool
	vectorOID uint32
	// embType is the embedding column's type (vector or real[]), which the staging table's
	// column takes too: no cast, and a vector is sent in its own 4 + 4·dim bytes.
	embType string
	// staged holds the sessions (*pgconn.PgConn) that have created the staging table. A
	// closed session's entry stays, harmlessly: its pointer is never reused while held.
	staged sync.Map
	// parts holds the suppliers (int32) whose partition of product_embeddings is known to exist.
	parts sync.Map
}

// OpenStore checks product_embeddings exists and learns its embedding column's type.
func OpenStore(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	var typ string
	var oid uint32
	err := pool.QueryRow(ctx, `SELECT format_type(atttypid, NULL), atttypid FROM pg_attribute
		WHERE attrelid = to_regclass('product_embeddings') AND attname = 'embedding' AND NOT attisdropped`).Scan(&typ, &oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotMigrated
	}
	if err != nil {
		return nil, fmt.Errorf("inspect product_embeddings: %w", err)
	}
	s := &Store{pool: pool, vector: typ == "vector" || strings.HasSuffix(typ, ".vector"), embType: typ}
	if s.vector {
		s.vectorOID = oid
	}
	return s, nil
}

// Vector reports whether the embedding column is pgvector's vector type.
func (s *Store) Vector() bool { return s.vector }

type storedHash struct {
	hash    []byte
	deleted bool
}

// hashes returns the stored content hashes of keys for model.
func (s *Store) hashes(ctx context.Context, model string, keys []event.Key) (map[event.Key]storedHash, error) {
	sup, ids := splitKeys(keys)
	rows, err := s.pool.Query(ctx, `SELECT e.supplier_id, e.product_id, e.content_hash, e.deleted
		FROM product_embeddings e
		JOIN unnest($2::int[], $3::bigint[]) AS k(s, p) ON e.supplier_id = k.s AND e.product_id = k.p
		WHERE e.model = $1`, model, sup, ids)
	if err != nil {
		return nil, fmt.Errorf("read content hashes: %w", err)
	}
	out := make(map[event.Key]storedHash, len(keys))
	var k event.Key
	var sh storedHash
	_, err = pgx.ForEachRow(rows, []any{&k.SupplierID, &k.ID, &sh.hash, &sh.deleted}, func() error {
		out[k] = storedHash{hash: slices.Clone(sh.hash), deleted: sh.deleted}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read content hashes: %w", err)
	}
	return out, nil
}

// productText is what the text of a product is made of.
type productText struct {
	name, description string
	attributes        json.RawMessage
}

// currentRows reads the text columns of keys from products: for updates whose description or
// attributes came as unchanged TOAST. Keys whose row is gone are absent from the result.
func (s *Store) currentRows(ctx context.Context, keys []event.Key) (map[event.Key]productText, error) {
	sup, ids := splitKeys(keys)
	rows, err := s.pool.Query(ctx, `SELECT p.supplier_id, p.id, p.name, coalesce(p.description, ''), p.attributes::text
		FROM products p
		JOIN unnest($1::int[], $2::bigint[]) AS k(s, i) ON p.supplier_id = k.s AND p.id = k.i`, sup, ids)
	if err != nil {
		return nil, fmt.Errorf("read current products: %w", err)
	}
	out := make(map[event.Key]productText, len(keys))
	var k event.Key
	var pt productText
	var attrs string
	_, err = pgx.ForEachRow(rows, []any{&k.SupplierID, &k.ID, &pt.name, &pt.description, &attrs}, func() error {
		out[k] = productText{name: pt.name, description: pt.description, attributes: json.RawMessage(attrs)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read current products: %w", err)
	}
	return out, nil
}

func splitKeys(keys []event.Key) ([]int32, []int64) {
	sup := make([]int32, len(keys))
	ids := make([]int64, len(keys))
	for i, k := range keys {
		sup[i], ids[i] = int32(k.SupplierID), k.ID
	}
	return sup, ids
}

// write is one row of a batch write.
type write struct {
	key     event.Key
	sku     *string // nil keeps the stored one (deletes carry no sku)
	name    *string
	vec     []float32 // nil with !deleted: the text did not change, keep the stored vector
	hash    []byte
	lsn     event.LSN // commit LSN of the event's transaction
	seq     int       // the event's position in its transaction
	deleted bool
	// fresh says the key had no vector of the model when the batch read the stored hashes:
	// such a write is COPYed straight into product_embeddings.
	fresh bool
}

// stagingSQL creates the session's staging table for a batch of vectors: COPY into it is
// binary and cheap, where slicing vectors out of one big array parameter is not.
const stagingSQL = `CREATE TEMP TABLE IF NOT EXISTS tidemark_embedding_batch (
	s int, p bigint, sku text, name text, dim int, e %s, h bytea, lsn pg_lsn, seq int, del bool
) ON COMMIT DELETE ROWS`

// upsertSQL writes the staged batch in one statement. A row applies only when its
// (source_lsn, source_seq) is newer than the stored one, and none that a recorded truncate
// has overtaken. A row without a vector (unchanged text) applies only while the stored row
// still holds the vector of that text: when a concurrent write changed it, the caller embeds
// after all.
const upsertSQL = `INSERT INTO product_embeddings AS pe
	(supplier_id, product_id, model, sku, name, dim, embedding, content_hash, source_lsn, source_seq, deleted, updated_at)
SELECT u.s, u.p, $1, u.sku, u.name, u.dim, u.e, u.h, u.lsn, u.seq, u.del, now()
FROM tidemark_embedding_batch u
WHERE NOT EXISTS (SELECT 1 FROM product_embedding_truncations t
	WHERE t.model = $1 AND t.supplier_id IN (0, u.s) AND (t.source_lsn, t.source_seq) >= (u.lsn, u.seq))
ORDER BY u.s, u.p
ON CONFLICT (supplier_id, product_id, model) DO UPDATE SET
	sku = coalesce(EXCLUDED.sku, pe.sku),
	name = coalesce(EXCLUDED.name, pe.name),
	dim = CASE WHEN EXCLUDED.deleted THEN NULL ELSE coalesce(EXCLUDED.dim, pe.dim) END,
	embedding = CASE WHEN EXCLUDED.deleted THEN NULL ELSE coalesce(EXCLUDED.embedding, pe.embedding) END,
	content_hash = EXCLUDED.content_hash,
	source_lsn = EXCLUDED.source_lsn,
	source_seq = EXCLUDED.source_seq,
	deleted = EXCLUDED.deleted,
	updated_at = now()
WHERE (pe.source_lsn, pe.source_seq) < (EXCLUDED.source_lsn, EXCLUDED.source_seq)
	AND (EXCLUDED.deleted OR EXCLUDED.embedding IS NOT NULL
		OR (NOT pe.deleted AND pe.embedding IS NOT NULL AND pe.content_hash = EXCLUDED.content_hash))
RETURNING supplier_id, product_id`

// batchTx is the transaction of one batch's writes.
type batchTx struct {
	pgx.Tx
	store     *Store
	committed bool
}

// begin starts the transaction of a batch; end must follow, whether or not commit did.
func (s *Store) begin(ctx context.Context) (*batchTx, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &batchTx{Tx: tx, store: s}, nil
}

func (t *batchTx) commit(ctx context.Context) error {
	if err := t.Commit(ctx); err != nil {
		return fmt.Errorf("commit vectors: %w", err)
	}
	t.committed = true
	return nil
}

// end rolls back what was not committed.
func (t *batchTx) end(ctx context.Context) {
	if !t.committed {
		// A rollback may have undone the session's staging table: create it again next time.
		t.store.staged.Delete(t.Conn().PgConn())
	}
	_ = t.Rollback(context.WithoutCancel(ctx)) // after Commit it is a no-op
}

// upsert writes ws in tx (COPY to the staging table, then one INSERT … ON CONFLICT) and
// returns the keys whose write applied.
func (s *Store) upsert(ctx context.Context, tx pgx.Tx, model string, ws []write, again bool) (map[event.Key]bool, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	if err := s.ensurePartitions(ctx, tx, ws); err != nil {
		return nil, err
	}
	s.useCodecs(tx)
	applied := make(map[event.Key]bool, len(ws))
	var fresh []write
	for i := range ws {
		if ws[i].fresh && ws[i].vec != nil && !ws[i].deleted {
			fresh = append(fresh, ws[i])
		}
	}
	if len(fresh) > 0 {
		copied, err := s.copyNew(ctx, tx, model, fresh)
		if err != nil {
			return nil, err
		}
		if copied {
			rest := ws[:0:0]
			for _, w := range ws {
				if w.fresh && w.vec != nil && !w.deleted {
					applied[w.key] = true
				} else {
					rest = append(rest, w)
				}
			}
			if ws = rest; len(ws) == 0 {
				return applied, nil
			}
		}
	}
	// Each round trip counts on a busy machine: create the staging table once per session, and
	// empty it only for a second pass in one transaction (commit empties it otherwise).
	pc := tx.Conn().PgConn()
	if _, ok := s.staged.Load(pc); !ok {
		if _, err := tx.Exec(ctx, fmt.Sprintf(stagingSQL, s.embType)); err != nil {
			return nil, fmt.Errorf("create staging table: %w", err)
		}
		s.staged.Store(pc, true)
	} else if again {
		if _, err := tx.Exec(ctx, "DELETE FROM tidemark_embedding_batch"); err != nil {
			return nil, fmt.Errorf("empty staging table: %w", err)
		}
	}
	src := pgx.CopyFromSlice(len(ws), func(i int) ([]any, error) {
		w := &ws[i]
		var dim *int32
		var vec []float32
		if len(w.vec) > 0 {
			d := int32(len(w.vec))
			dim, vec = &d, w.vec
		}
		return []any{int32(w.key.SupplierID), w.key.ID, w.sku, w.name, dim, vec, w.hash, w.lsn, int32(w.seq), w.deleted}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tidemark_embedding_batch"},
		[]string{"s", "p", "sku", "name", "dim", "e", "h", "lsn", "seq", "del"}, src); err != nil {
		return nil, fmt.Errorf("stage vectors: %w", err)
	}
	rows, err := tx.Query(ctx, upsertSQL, model)
	if err != nil {
		return nil, fmt.Errorf("write vectors: %w", err)
	}
	var k event.Key
	if _, err := pgx.ForEachRow(rows, []any{&k.SupplierID, &k.ID}, func() error {
		applied[k] = true
		return nil
	}); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23514" { // check_violation
			// No partition for a row: one this session created in a transaction that was then
			// rolled back. Look them all up again on the retry.
			s.parts.Clear()
		}
		return nil, fmt.Errorf("write vectors: %w", err)
	}
	return applied, nil
}

// copyColumns are the columns copyNew writes; the rest take their defaults.
var copyColumns = []string{"supplier_id", "product_id", "model", "sku", "name", "dim", "embedding",
	"content_hash", "source_lsn", "source_seq", "deleted"}

// copyNew writes the vectors of keys that had none with one COPY into product_embeddings,
// skipping the staging table, the sort and the conflict checks of the upsert: what a drop of new
// products needs. It reports false, having written nothing, when the upsert must take them
// after all: a recorded truncate overtook one of them (the upsert drops those), or another
// writer inserted one of the keys meanwhile (a unique violation, or a deadlock with that
// writer, undone by rolling back to a savepoint).
func (s *Store) copyNew(ctx context.Context, tx pgx.Tx, model string, ws []write) (bool, error) {
	rows, err := tx.Query(ctx, `SELECT supplier_id, source_lsn::text, source_seq FROM product_embedding_truncations WHERE model = $1`, model)
	if err != nil {
		return false, fmt.Errorf("read truncates: %w", err)
	}
	var (
		sup     int32
		lsnText string
		seq     int32
		late    bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&sup, &lsnText, &seq}, func() error {
		lsn, err := event.ParseLSN(lsnText)
		if err != nil {
			return err
		}
		at := event.Position{CommitLSN: lsn, Seq: int(seq)}
		for i := range ws {
			if (sup == 0 || int64(sup) == ws[i].key.SupplierID) && at.Compare(event.Position{CommitLSN: ws[i].lsn, Seq: ws[i].seq}) >= 0 {
				late = true
			}
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("read truncates: %w", err)
	}
	if late {
		return false, nil
	}
	// In key order: two writers COPYing overlapping keys then wait for each other in one order.
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b write) int {
		if c := cmp.Compare(a.key.SupplierID, b.key.SupplierID); c != 0 {
			return c
		}
		return cmp.Compare(a.key.ID, b.key.ID)
	})
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("savepoint: %w", err)
	}
	src := pgx.CopyFromSlice(len(ws), func(i int) ([]any, error) {
		w := &ws[i]
		return []any{int32(w.key.SupplierID), w.key.ID, model, w.sku, w.name, int32(len(w.vec)), w.vec, w.hash,
			w.lsn, int32(w.seq), false}, nil
	})
	if _, err := sp.CopyFrom(ctx, pgx.Identifier{"product_embeddings"}, copyColumns, src); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40P01") { // unique_violation, deadlock_detected
			if rerr := sp.Rollback(ctx); rerr != nil {
				return false, fmt.Errorf("roll back to savepoint: %w", rerr)
			}
			return false, nil
		}
		return false, fmt.Errorf("copy new vectors: %w", err)
	}
	if err := sp.Commit(ctx); err != nil {
		return false, fmt.Errorf("release savepoint: %w", err)
	}
	return true, nil
}

// useCodecs installs on tx's connection the binary encoders COPY uses for vectors and LSNs.
func (s *Store) useCodecs(tx pgx.Tx) {
	m := tx.Conn().TypeMap()
	useFloat4Arrays(m)
	useBinaryWriters(m, s.vectorOID)
}

// partitionLockKey serialises the creation of one supplier's partition: CREATE TABLE IF NOT
// EXISTS alone races (both sessions see it missing, one fails on pg_type's unique index).
func partitionLockKey(supplier int32) int64 { return 0x7465_0000_0000_0000 | int64(uint32(supplier)) }

// ensurePartitions creates, in tx, the partitions of product_embeddings that the suppliers of
// ws lack. It must run before tx touches product_embeddings: creating a partition locks the
// whole table until tx ends, which other writers wait for (once per new supplier), and a
// transaction already holding a weaker lock on it could deadlock with another doing the same.
func (s *Store) ensurePartitions(ctx context.Context, tx pgx.Tx, ws []write) error {
	var unknown []int32
	for i := range ws {
		sup := int32(ws[i].key.SupplierID)
		if _, ok := s.parts.Load(sup); !ok && !slices.Contains(unknown, sup) {
			unknown = append(unknown, sup)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT s, to_regclass(quote_ident('product_embeddings_s' || s)) IS NOT NULL
		FROM unnest($1::int[]) s`, unknown)
	if err != nil {
		return fmt.Errorf("look up vector partitions: %w", err)
	}
	var missing []int32
	var sup int32
	var exists bool
	if _, err := pgx.ForEachRow(rows, []any{&sup, &exists}, func() error {
		if exists {
			s.parts.Store(sup, true)
		} else {
			missing = append(missing, sup)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("look up vector partitions: %w", err)
	}
	slices.Sort(missing) // one order for every session: no lock cycles
	for _, sup := range missing {
		// Not cached: a rollback of tx takes the partition back.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockKey(sup)); err != nil {
			return fmt.Errorf("lock vector partition of supplier %d: %w", sup, err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF product_embeddings FOR VALUES IN (%d)",
			pgx.Identifier{PartitionName(sup)}.Sanitize(), sup)); err != nil {
			return fmt.Errorf("create vector partition of supplier %d: %w", sup, err)
		}
	}
	return nil
}

// truncate records a TRUNCATE of supplier's products (0: all of them) at (lsn, seq) and
// tombstones every vector of model in that scope written by an older event.
func (s *Store) truncate(ctx context.Context, tx pgx.Tx, model string, supplier int32, lsn event.LSN, seq int) (int64, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO product_embedding_truncations AS t (model, supplier_id, source_lsn, source_seq)
		VALUES ($1, $2, $3::text::pg_lsn, $4)
		ON CONFLICT (model, supplier_id) DO UPDATE SET source_lsn = EXCLUDED.source_lsn, source_seq = EXCLUDED.source_seq
		WHERE (t.source_lsn, t.source_seq) < (EXCLUDED.source_lsn, EXCLUDED.source_seq)`,
		model, supplier, lsn.String(), seq); err != nil {
		return 0, fmt.Errorf("record truncate: %w", err)
	}
	tag, err := tx.Exec(ctx, `UPDATE product_embeddings SET deleted = true, embedding = NULL, dim = NULL,
			content_hash = NULL, source_lsn = $3::text::pg_lsn, source_seq = $4, updated_at = now()
		WHERE model = $1 AND ($2 = 0 OR supplier_id = $2)
			AND (source_lsn, source_seq) < ($3::text::pg_lsn, $4)`, model, supplier, lsn.String(), seq)
	if err != nil {
		return 0, fmt.Errorf("tombstone truncated vectors: %w", err)
	}
	return tag.RowsAffected(), nil
}

// hitHeap is a min-heap by score: its root is the worst of the best k.
type hitHeap []Hit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return h[i].Score < h[j].Score }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)        { *h = append(*h, x.(Hit)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
