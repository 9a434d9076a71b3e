package catalog_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestVectorLayouts converts a table holding vectors between the two layouts and back, by
// option and by the database's tidemark.vectors setting, and checks every vector survives.
// It needs pgvector on the server, as make test does (.ci/run installs it).
func TestVectorLayouts(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.DatabaseVectors(t, testenv.Cluster(t), "array"))
	column := func() string {
		t.Helper()
		l, err := catalog.ReadVectorLayout(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if !l.Available {
			t.Fatalf("pgvector is not installed on the test server: %v", catalog.ErrNoPgvector)
		}
		return l.Column
	}
	if c := column(); c != "real[]" {
		t.Fatalf("tidemark.vectors = array: column %s, want real[]", c)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE product_embeddings_s1 PARTITION OF product_embeddings FOR VALUES IN (1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO product_embeddings (supplier_id, product_id, model, dim, embedding, source_lsn, deleted)
		VALUES (1, 1, 'm', 3, '{0.6,0,0.8}', '0/1', false), (1, 2, 'm', NULL, NULL, '0/1', true)`); err != nil {
		t.Fatal(err)
	}
	sum := func() string {
		t.Helper()
		var s string
		if err := pool.QueryRow(ctx, `SELECT string_agg(coalesce(embedding::real[]::text, 'null'), ' ' ORDER BY product_id)
			FROM product_embeddings`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	const want = "{0.6,0,0.8} null"
	for _, step := range []struct {
		opt    catalog.Vectors
		column string
	}{
		{catalog.VectorsAuto, "real[]"}, // auto keeps what is there
		{catalog.VectorsPgvector, "vector"},
		{catalog.VectorsAuto, "vector"},
		{catalog.VectorsArray, "real[]"},
		{catalog.VectorsPgvector, "vector"},
	} {
		if _, err := catalog.Migrate(ctx, pool, catalog.WithVectors(step.opt)); err != nil {
			t.Fatalf("migrate --vectors %s: %v", step.opt, err)
		}
		if c := column(); c != step.column {
			t.Fatalf("after --vectors %s: column %s, want %s", step.opt, c, step.column)
		}
		if got := sum(); got != want {
			t.Fatalf("after --vectors %s: vectors %s, want %s", step.opt, got, want)
		}
	}
	// Without an option the database's setting (array) applies again; the ANN index on a
	// partition, which real[] cannot carry, goes first.
	if _, err := pool.Exec(ctx, `CREATE INDEX product_embeddings_s1_ann_0_10 ON product_embeddings_s1
		USING ivfflat ((embedding::halfvec(3)) halfvec_cosine_ops) WITH (lists = 1) WHERE model = 'm' AND dim = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var left bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('product_embeddings_s1_ann_0_10') IS NOT NULL").Scan(&left); err != nil || left {
		t.Fatalf("the ANN index survived the conversion to real[] (%v)", err)
	}
	if c := column(); c != "real[]" {
		t.Fatalf("back to the database setting: column %s, want real[]", c)
	}
	if _, err := catalog.ParseVectors("pgvectors"); !errors.Is(err, catalog.ErrBadVectors) {
		t.Fatalf("ParseVectors(pgvectors) = %v, want ErrBadVectors", err)
	}
}

// TestMigrationPartitionsExistingVectors upgrades a database migrated before 0004 with vectors
// in it: every vector is carried into its supplier's partition, with its tombstones.
func TestMigrationPartitionsExistingVectors(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Pool(t, testenv.Database(t))
	migrateBefore(ctx, t, pool, "0004")
	if _, err := pool.Exec(ctx, `INSERT INTO product_embeddings (supplier_id, product_id, model, sku, dim, embedding, source_lsn, source_seq, deleted)
		SELECT 1 + i % 3, i, 'm', 'S-' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE 2 END,
			CASE WHEN i % 10 = 0 THEN NULL ELSE ARRAY[i, 1]::real[] END, '0/10', i, i % 10 = 0
		FROM generate_series(1, 300) i`); err != nil {
		t.Fatal(err)
	}
	digest := func() string {
		t.Helper()
		var d string
		if err := pool.QueryRow(ctx, `SELECT md5(string_agg(concat_ws('|', supplier_id, product_id, model, sku, dim,
			embedding::real[]::text, source_lsn, source_seq, deleted), ',' ORDER BY supplier_id, product_id)) FROM product_embeddings`).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := digest()
	applied, err := catalog.Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 || applied[0] != "0004_embeddings_by_supplier.sql" {
		t.Fatalf("applied %v, want 0004 first", applied)
	}
	if after := digest(); after != before {
		t.Fatalf("vectors changed across 0004: %s → %s", before, after)
	}
	var parts []string
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
		WHERE h.inhparent = 'product_embeddings'::regclass ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(parts, ",") != "product_embeddings_s1,product_embeddings_s2,product_embeddings_s3" {
		t.Fatalf("partitions %v", parts)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM ONLY product_embeddings_s2").Scan(&n); err != nil || n != 100 {
		t.Fatalf("supplier 2's partition holds %d rows (%v), want 100", n, err)
	}
}
