package encoder

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/event"
)

// freshWrites are writes of products ids of supplier 1 as the encoder makes them for keys
// without a stored vector.
func (v *vecStore) freshWrites(lsn event.LSN, ids ...int64) []write {
	var texts []string
	for _, id := range ids {
		texts = append(texts, catalogueText(id))
	}
	vecs, _ := v.emb.Embed(v.ctx, texts)
	ws := make([]write, len(ids))
	for i, id := range ids {
		sku, name := fmt.Sprintf("S1-%d", id), texts[i]
		ws[i] = write{key: event.Key{SupplierID: 1, ID: id}, sku: &sku, name: &name, vec: vecs[i],
			hash: ContentHash(v.emb.Model(), texts[i]), lsn: lsn, seq: i, fresh: true}
	}
	return ws
}

func (v *vecStore) upsertTx(ws []write) map[event.Key]bool {
	v.t.Helper()
	var applied map[event.Key]bool
	if err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
		var err error
		applied, err = v.s.upsert(v.ctx, tx, v.emb.Model(), ws, false)
		return err
	}); err != nil {
		v.t.Fatal(err)
	}
	return applied
}

// stored reads back a vector row: its LSN and its embedding as real[].
func (v *vecStore) stored(id int64) (lsn string, vec []float32, ok bool) {
	v.t.Helper()
	err := v.pool.QueryRow(v.ctx, `SELECT source_lsn::text, embedding::real[] FROM product_embeddings
		WHERE supplier_id = 1 AND product_id = $1 AND model = $2`, id, v.emb.Model()).Scan(&lsn, &vec)
	if err == pgx.ErrNoRows {
		return "", nil, false
	}
	if err != nil {
		v.t.Fatal(err)
	}
	return lsn, vec, true
}

// TestCopyNewVectors: vectors of new keys go straight into product_embeddings by COPY, in the
// column's own binary format, counted by the triggers like any other write.
func TestCopyNewVectors(t *testing.T) {
	for _, layout := range []string{"pgvector", "array"} {
		t.Run(layout, func(t *testing.T) {
			v := newVecStore(t, layout)
			ws := v.freshWrites(0x1_0000_0010, 1, 2, 3)
			// The COPY path itself, not the upsert it falls back to.
			var copied bool
			if err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
				if err := v.s.ensurePartitions(v.ctx, tx, ws); err != nil {
					return err
				}
				v.s.useCodecs(tx)
				var err error
				copied, err = v.s.copyNew(v.ctx, tx, v.emb.Model(), ws)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if !copied {
				t.Fatal("new keys were not COPYed")
			}
			for i, w := range ws {
				lsn, vec, ok := v.stored(w.key.ID)
				if !ok {
					t.Fatalf("product %d: no vector", w.key.ID)
				}
				if lsn != "1/10" {
					t.Errorf("product %d: source_lsn %s, want 1/10", w.key.ID, lsn)
				}
				if fmt.Sprint(vec) != fmt.Sprint(ws[i].vec) {
					t.Errorf("product %d: stored vector differs from the one written", w.key.ID)
				}
			}
			var live int
			if err := v.pool.QueryRow(v.ctx, `SELECT live FROM tidemark_vector_counts WHERE supplier_id = 1 AND model = $1`,
				v.emb.Model()).Scan(&live); err != nil {
				t.Fatal(err)
			}
			if live != 3 {
				t.Errorf("vector count %d, want 3", live)
			}
		})
	}
}

// TestCopyNewVectorsRace: a key that looked new when the batch read the stored hashes but was
// written by another encoder since: the COPY hits a unique violation, the savepoint undoes it,
// and the LSN-guarded upsert takes the batch, so an older event does not overwrite a newer one.
func TestCopyNewVectorsRace(t *testing.T) {
	v := newVecStore(t, "pgvector")
	v.upsertTx(v.freshWrites(0x2_0000_0000, 1)) // the other encoder's newer write
	ws := v.freshWrites(0x1_0000_0000, 1, 2)    // ours: product 1 older, product 2 new
	if err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
		v.s.useCodecs(tx)
		copied, err := v.s.copyNew(v.ctx, tx, v.emb.Model(), ws)
		if err != nil {
			return err
		}
		if copied {
			t.Fatal("COPY of a key that exists succeeded: the race was not reproduced")
		}
		// The transaction goes on after the failed COPY.
		applied, err := v.s.upsert(v.ctx, tx, v.emb.Model(), ws, false)
		if err != nil {
			return err
		}
		if applied[ws[0].key] || !applied[ws[1].key] {
			t.Errorf("applied %v: want product 2 only", applied)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if lsn, _, _ := v.stored(1); lsn != "2/0" {
		t.Errorf("product 1 at %s: the older event overwrote the newer vector (want 2/0)", lsn)
	}
	if _, _, ok := v.stored(2); !ok {
		t.Error("product 2: no vector")
	}
}

// TestCopyNewVectorsAfterTruncate: a new key's write older than a recorded truncate of its
// supplier is dropped, as the upsert drops it; a newer one is written.
func TestCopyNewVectorsAfterTruncate(t *testing.T) {
	v := newVecStore(t, "pgvector")
	v.upsertTx(v.freshWrites(0x1_0000_0000, 9)) // the partition exists
	if err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
		_, err := v.s.truncate(v.ctx, tx, v.emb.Model(), 1, 0x2_0000_0000, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	v.upsertTx(v.freshWrites(0x1_8000_0000, 1))
	if _, _, ok := v.stored(1); ok {
		t.Error("a write older than the truncate was applied")
	}
	v.upsertTx(v.freshWrites(0x3_0000_0000, 2))
	if _, _, ok := v.stored(2); !ok {
		t.Error("a write newer than the truncate was dropped")
	}
}
