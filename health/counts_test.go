package health_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
	"golang.org/x/sync/errgroup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// migrated returns a database migrated to the current schema, with a few vectors written
// before 0006 (which must count them); plain makes product_embeddings a plain table again
// before 0006, as it was before 0004, so the counting triggers are tested on both layouts.
func migrated(t *testing.T, plain bool) *pgxpool.Pool {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Pool(t, testenv.Database(t))
	ms, err := catalog.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Version, "0006") {
			before(t, pool, plain)
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Version, err)
		}
	}
	if n := mismatches(t, pool); n != 0 {
		t.Fatalf("0006 counted %d (supplier, model) pairs of the vectors already there wrong", n)
	}
	return pool
}

// before sets product_embeddings up as 0006 finds it: partitioned (with the partitions of
// suppliers 1 to 3, as the encoders create them) or plain, holding a few vectors already.
func before(t *testing.T, pool *pgxpool.Pool, plain bool) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	var partitioned bool
	if err := pool.QueryRow(ctx, "SELECT relkind = 'p' FROM pg_class WHERE oid = 'product_embeddings'::regclass").Scan(&partitioned); err != nil {
		t.Fatal(err)
	}
	if !partitioned {
		t.Fatal("product_embeddings is not partitioned after 0004")
	}
	if plain {
		if _, err := pool.Exec(ctx, `ALTER TABLE product_embeddings RENAME TO pe_old;
			CREATE TABLE product_embeddings (LIKE pe_old INCLUDING DEFAULTS, PRIMARY KEY (supplier_id, product_id, model));
			DROP TABLE pe_old`); err != nil {
			t.Fatal(err)
		}
	}
	for s := 1; !plain && s <= 3; s++ {
		if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE product_embeddings_s%d PARTITION OF product_embeddings FOR VALUES IN (%d)", s, s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, upsert, "a", "0/1", []int32{1, 1, 2, 3}, []int64{9001, 9002, 9001, 9001}, []bool{false, true, false, false}); err != nil {
		t.Fatal(err)
	}
}

// mismatches counts the (supplier, model) pairs whose kept counts differ from the table's.
func mismatches(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT supplier_id, model, count(*) FILTER (WHERE NOT deleted) AS live, count(*) FILTER (WHERE deleted) AS deleted
		FROM product_embeddings GROUP BY 1, 2) t
		FULL JOIN (SELECT * FROM tidemark_vector_counts WHERE live <> 0 OR deleted <> 0) c USING (supplier_id, model)
		WHERE t.live IS DISTINCT FROM c.live OR t.deleted IS DISTINCT FROM c.deleted`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// upsert is the encoders' write: one INSERT … ON CONFLICT DO UPDATE of a batch, newer
// positions only. Its INSERT and UPDATE triggers each touch the suppliers of their rows.
const upsert = `INSERT INTO product_embeddings AS pe (supplier_id, product_id, model, dim, embedding, source_lsn, source_seq, deleted)
SELECT b.s, b.p, $1, 2, CASE WHEN b.del THEN NULL ELSE '{0.6,0.8}'::real[] END, $2::pg_lsn, 0, b.del
FROM unnest($3::int[], $4::bigint[], $5::bool[]) AS b(s, p, del)
ORDER BY b.s, b.p
ON CONFLICT (supplier_id, product_id, model) DO UPDATE SET
	embedding = EXCLUDED.embedding, source_lsn = EXCLUDED.source_lsn, deleted = EXCLUDED.deleted
WHERE pe.source_lsn < EXCLUDED.source_lsn`

// TestVectorCounts: the counts kept by the triggers equal the table's after concurrent
// encoder-shaped writes (inserts, rewrites, tombstones, revivals, a truncate-style tombstoning
// of a supplier, deletes), on the plain and the partitioned table, without a deadlock between
// writers whose batches touch the same suppliers in opposite orders.
func TestVectorCounts(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			pool := migrated(t, plain)
			ctx := testenv.Context(t, 3*time.Minute)
			if _, err := pool.Exec(ctx, upsert, "c", "0/1", []int32{1, 2}, []int64{1000, 1000}, []bool{false, false}); err != nil {
				t.Fatal(err)
			}
			g, gctx := errgroup.WithContext(ctx)
			for w := range 4 {
				g.Go(func() error {
					r := rand.New(rand.NewPCG(uint64(w), 7))
					for i := range 150 {
						var sup []int32
						var ids []int64
						var del []bool
						for range 40 {
							// Writer w rewrites keys the others insert: the INSERT part of one
							// batch and the UPDATE part of another cross suppliers.
							sup = append(sup, int32(1+r.IntN(3)))
							ids = append(ids, int64(r.IntN(120)))
							del = append(del, r.IntN(5) == 0)
						}
						sup, ids, del = dedup(sup, ids, del)
						lsn := fmt.Sprintf("0/%X", (i+1)*16+w)
						model := []string{"a", "b"}[i%2]
						if _, err := pool.Exec(gctx, upsert, model, lsn, sup, ids, del); err != nil {
							return fmt.Errorf("writer %d batch %d: %w", w, i, err)
						}
						switch i % 50 {
						case 25: // a truncate event of one supplier: every vector tombstoned
							// Rows locked in key order, as the batches lock theirs: the test's
							// writers must not deadlock on product_embeddings itself.
							if _, err := pool.Exec(gctx, `UPDATE product_embeddings SET deleted = true, embedding = NULL
								WHERE (supplier_id, product_id, model) IN (SELECT supplier_id, product_id, model FROM product_embeddings
									WHERE supplier_id = $1 AND model = 'a' AND NOT deleted ORDER BY 1, 2, 3 FOR UPDATE)`, 1+w%3); err != nil {
								return fmt.Errorf("writer %d tombstones supplier %d: %w", w, 1+w%3, err)
							}
						case 49:
							if _, err := pool.Exec(gctx, `DELETE FROM product_embeddings WHERE (supplier_id, product_id, model) IN
								(SELECT supplier_id, product_id, model FROM product_embeddings WHERE product_id % 17 = $1 ORDER BY 1, 2, 3 FOR UPDATE)`, w); err != nil {
								return fmt.Errorf("writer %d deletes: %w", w, err)
							}
						}
					}
					return nil
				})
			}
			// Two writers whose batches each tombstone or revive a vector of one supplier and
			// insert one of another, in opposite orders: the statement's UPDATE trigger counts
			// the first supplier, its INSERT trigger the second.
			for w := range 2 {
				g.Go(func() error {
					for i := range 300 {
						old, fresh := int32(1+w), int32(2-w)
						sup, ids, del := []int32{old, fresh}, []int64{1000, int64(2000 + w*1000 + i)}, []bool{i%2 == 0, false}
						if old > fresh {
							sup, ids, del = []int32{fresh, old}, []int64{ids[1], ids[0]}, []bool{del[1], del[0]}
						}
						lsn := fmt.Sprintf("1/%X", (i+1)*16+w)
						if _, err := pool.Exec(gctx, upsert, "c", lsn, sup, ids, del); err != nil {
							return fmt.Errorf("crossing writer %d batch %d: %w", w, i, err)
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			var rows int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM product_embeddings").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows < 500 {
				t.Fatalf("only %d vectors written: the test proves little", rows)
			}
			if n := mismatches(t, pool); n != 0 {
				t.Fatalf("%d (supplier, model) counts differ from product_embeddings", n)
			}
			if _, err := pool.Exec(ctx, "TRUNCATE product_embeddings"); err != nil {
				t.Fatal(err)
			}
			var left int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_vector_counts").Scan(&left); err != nil || left != 0 {
				t.Fatalf("after TRUNCATE %d counts are left (%v)", left, err)
			}
		})
	}
}

// dedup keeps the last of each key: one INSERT … ON CONFLICT cannot touch a row twice.
func dedup(sup []int32, ids []int64, del []bool) ([]int32, []int64, []bool) {
	type key struct {
		s int32
		p int64
	}
	last := map[key]int{}
	for i := range sup {
		last[key{sup[i], ids[i]}] = i
	}
	var s2 []int32
	var i2 []int64
	var d2 []bool
	for i := range sup {
		if last[key{sup[i], ids[i]}] == i {
			s2, i2, d2 = append(s2, sup[i]), append(i2, ids[i]), append(d2, del[i])
		}
	}
	return s2, i2, d2
}
