package catalog_test

import (
	"errors"
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
	pool := testenv.Pool(t, testenv.DatabaseVectors(t, testenv.Cluster(t), "array"))
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
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
	// Without an option the database's setting (array) applies again.
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if c := column(); c != "real[]" {
		t.Fatalf("back to the database setting: column %s, want real[]", c)
	}
	if _, err := catalog.ParseVectors("pgvectors"); !errors.Is(err, catalog.ErrBadVectors) {
		t.Fatalf("ParseVectors(pgvectors) = %v, want ErrBadVectors", err)
	}
}
