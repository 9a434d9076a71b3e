package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/internal/testenv"
)

// vectorText is test product id's text.
func vectorText(id int) string {
	words := []string{"waterproof", "merino", "cast-iron", "wireless", "ultralight", "walnut", "ripstop", "ceramic", "insulated"}
	nouns := []string{"hiking jacket", "frying pan", "headphones", "tent", "cutting board", "backpack", "kettle"}
	return fmt.Sprintf("%s %s %s %d", words[id%len(words)], words[(id/9)%len(words)], nouns[(id/5)%len(nouns)], id)
}

// fillVectors writes n vectors of the hash embedder for supplier's products 1..n, as the
// encoders would (with SQL: this test is about the commands that read them).
func fillVectors(t *testing.T, ctx context.Context, pool *pgxpool.Pool, supplier, n int, pgvector bool) {
	t.Helper()
	emb, err := encoder.NewHash(encoder.DefaultDim)
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, n)
	for i := range texts {
		texts[i] = vectorText(i + 1)
	}
	vecs, _ := emb.Embed(ctx, texts)
	cast := ""
	if pgvector {
		cast = "::vector"
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF product_embeddings FOR VALUES IN (%d)",
		encoder.PartitionName(int32(supplier)), supplier)); err != nil {
		t.Fatal(err)
	}
	var b pgx.Batch
	for i, v := range vecs {
		b.Queue(fmt.Sprintf(`INSERT INTO product_embeddings (supplier_id, product_id, model, sku, name, dim, embedding, content_hash, source_lsn)
			VALUES ($1, $2, $3, $4, $5, 384, $6::real[]%s, '\x01', '0/1')`, cast), supplier, i+1, emb.Model(), fmt.Sprintf("S-%d", i+1), texts[i], v)
	}
	if err := pool.SendBatch(ctx, &b).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE product_embeddings"); err != nil {
		t.Fatal(err)
	}
}

func searchJSON(t *testing.T, pgURL string, args ...string) encoder.SearchResult {
	t.Helper()
	stdout, stderr, code := runTidemark(t, pgURL, "nats://127.0.0.1:1", append([]string{"search", "--json"}, args...)...)
	var r encoder.SearchResult
	if code != 0 || json.Unmarshal([]byte(stdout), &r) != nil {
		t.Fatalf("search %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
	}
	return r
}

// TestVectorCommands runs what an operator runs on both layouts: migrate --vectors, search
// before and after tidemark index, --exact, and what doctor and status say about the index.
func TestVectorCommands(t *testing.T) {
	t.Parallel()
	pg := testenv.Lane(t) // doctor and status read every slot of the cluster
	for _, layout := range []string{"pgvector", "array"} {
		t.Run(layout, func(t *testing.T) {
			ctx := testenv.Context(t, 4*time.Minute)
			url := testenv.DatabaseVectors(t, pg, "")
			pool := testenv.Pool(t, url)
			n := testenv.NATS(t)
			_, stderr, code := runTidemark(t, url, n.URL(), "migrate", "--vectors", layout)
			column := map[string]string{"pgvector": "column=vector", "array": "column=real[]"}[layout]
			if code != 0 || !strings.Contains(stderr, column) {
				t.Fatalf("migrate --vectors %s: exit %d, want %s:\n%s", layout, code, column, stderr)
			}
			pgv := layout == "pgvector"
			fillVectors(t, ctx, pool, 1, encoder.IndexMinVectors+500, pgv)
			fillVectors(t, ctx, pool, 2, 200, pgv)

			r := searchJSON(t, url, "-k", "3", vectorText(4242))
			if r.Method != encoder.MethodScan || len(r.Hits) != 3 || r.Hits[0].ProductID != 4242 || r.Hits[0].SKU != "S-4242" {
				t.Fatalf("search before any index: %+v, want a scan finding S-4242 first", r)
			}
			checks, _, _, _ := runDoctor(t, url, n.URL())
			status := func() *health.IndexSummary {
				t.Helper()
				st, _, _, stderr := runStatus(t, url, n.URL())
				if st.Vectors == nil || len(st.Vectors.Models) != 1 || st.Vectors.Models[0].Index == nil {
					t.Fatalf("status: vectors %+v\n%s", st.Vectors, stderr)
				}
				return st.Vectors.Models[0].Index
			}
			if !pgv {
				wantCheck(t, checks, "vectors", health.Warn, "real[]: every search reads every vector")
				if !strings.Contains(checks["vectors"].Fix, "migrate --vectors pgvector") {
					t.Errorf("doctor's fix for real[]: %q", checks["vectors"].Fix)
				}
				if s := status(); s.State != "unavailable" {
					t.Errorf("status index on real[]: %+v", s)
				}
				if _, stderr, code := runTidemark(t, url, n.URL(), "index"); code == 0 || !strings.Contains(stderr, "pgvector") {
					t.Fatalf("index on real[]: exit %d\n%s", code, stderr)
				}
				return
			}
			wantCheck(t, checks, "vectors hash-v1-384", health.Warn, "1 of 2 supplier partitions have no index")
			if fix := checks["vectors hash-v1-384"].Fix; !strings.Contains(fix, "tidemark index") {
				t.Errorf("doctor's fix for a missing index: %q", fix)
			}
			if s := status(); s.State != "missing" || s.Missing != 1 || s.Small != 1 {
				t.Errorf("status before tidemark index: %+v", s)
			}

			_, stderr, code = runTidemark(t, url, n.URL(), "index")
			if code != 0 || !strings.Contains(stderr, "building index") || !strings.Contains(stderr, "index built") {
				t.Fatalf("tidemark index: exit %d\n%s", code, stderr)
			}
			r = searchJSON(t, url, "-k", "3", vectorText(4242))
			exact := searchJSON(t, url, "-k", "3", "--exact", vectorText(4242))
			if r.Method != encoder.MethodIndex || r.Indexed != 1 || r.Scanned != 1 || r.Hits[0] != exact.Hits[0] || exact.Method != encoder.MethodExact {
				t.Fatalf("search after tidemark index: %+v\nexact: %+v", r, exact)
			}
			if r := searchJSON(t, url, "--supplier", "2", vectorText(42)); r.Method != encoder.MethodScan || r.Scanned != 1 || r.Hits[0].ProductID != 42 {
				t.Fatalf("search of the small supplier: %+v", r)
			}
			checks, _, _, _ = runDoctor(t, url, n.URL())
			wantCheck(t, checks, "vectors hash-v1-384", health.OK, "index built (1 of 2 partitions")
			if s := status(); s.State != "built" || s.Built != 1 || s.Bytes == 0 {
				t.Errorf("status after tidemark index: %+v", s)
			}
			stdout, _, _ := runTidemark(t, url, n.URL(), "status")
			if !strings.Contains(stdout, "hash-v1-384: 5700 live, 0 deleted, index built (1 of 2 partitions") {
				t.Errorf("status text:\n%s", stdout)
			}
		})
	}
}
