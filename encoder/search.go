package encoder

import (
	"container/heap"
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Hit is a search result.
type Hit struct {
	SupplierID int64   `json:"supplier_id"`
	ProductID  int64   `json:"product_id"`
	SKU        string  `json:"sku"`
	Name       string  `json:"name"`
	Score      float64 `json:"score"` // cosine similarity, 1 is identical
}

// How a search found its hits.
const (
	MethodIndex = "index" // the ANN index of at least one partition searched (small ones are scanned)
	MethodScan  = "scan"  // every vector read: no pgvector, or no index for the model
	MethodExact = "exact" // every vector read, on request
)

// SearchOptions narrow a search.
type SearchOptions struct {
	Supplier int32 // only this supplier's products; 0: all
	K        int   // how many; default 10
	Exact    bool  // read every vector instead of the index (for checking it)
	// Probes is how many lists of each partition's index to read; 0: ProbeShare of them.
	// More is slower and finds more of the true nearest.
	Probes int
}

// SearchResult is the nearest products and how they were found.
type SearchResult struct {
	Model   string `json:"model"`
	Method  string `json:"method"`             // MethodIndex, MethodScan or MethodExact
	Indexed int    `json:"indexed_partitions"` // supplier partitions searched through their index
	Scanned int    `json:"scanned_partitions"` // supplier partitions read whole (small, or no index)
	Probes  int    `json:"probes,omitempty"`   // lists read of each partition's index
	Hits    []Hit  `json:"hits"`
}

// Search returns the k live products of model nearest to the query vector q, best first
// (see [Store.SearchWith]).
func (s *Store) Search(ctx context.Context, model string, q []float32, supplier int32, k int) ([]Hit, error) {
	r, err := s.SearchWith(ctx, model, q, SearchOptions{Supplier: supplier, K: k})
	return r.Hits, err
}

// searchSQL finds candidates through each partition's ANN index (the halfvec expression and
// the literal model and dimension match the partial index), then ranks them by the exact
// cosine. Iterative scans let a partition's index read more lists when the ones probed hold
// fewer than the candidates asked for (deleted rows, a small supplier).
const searchSQL = `WITH c AS MATERIALIZED (
	SELECT supplier_id, product_id, sku, name, embedding
	FROM product_embeddings
	WHERE model = %[1]s AND dim = %[2]d AND NOT deleted%[3]s
	ORDER BY embedding::halfvec(%[2]d) <=> $1::real[]::halfvec(%[2]d)
	LIMIT %[4]d)
SELECT supplier_id, product_id, coalesce(sku, ''), coalesce(name, ''), 1 - (embedding <=> $1::real[]::vector)
FROM c ORDER BY embedding <=> $1::real[]::vector LIMIT %[5]d`

// exactSQL reads every live vector of the model (of the supplier) and ranks them by the exact
// cosine: no index matches embedding <=> vector.
const exactSQL = `SELECT supplier_id, product_id, coalesce(sku, ''), coalesce(name, ''), 1 - (embedding <=> $1::real[]::vector)
FROM product_embeddings
WHERE model = %[1]s AND dim = %[2]d AND NOT deleted AND embedding IS NOT NULL%[3]s
ORDER BY embedding <=> $1::real[]::vector LIMIT %[5]d`

// SearchWith returns the opts.K live products of model nearest to the query vector q, best
// first, by cosine similarity (vectors are unit length). With pgvector it goes through each
// supplier partition's ANN index (IVFFlat, reading opts.Probes lists, else ProbeShare) and re-ranks
// the candidates exactly; partitions without an index are read whole; with opts.Exact every
// vector is. With real[] it streams the vectors and keeps the best k. A deleted product is
// never a hit: its row is a tombstone without a vector in the same snapshot.
func (s *Store) SearchWith(ctx context.Context, model string, q []float32, opts SearchOptions) (SearchResult, error) {
	res := SearchResult{Model: model, Method: MethodScan, Hits: []Hit{}}
	k := opts.K
	if k <= 0 {
		k = 10
	}
	if !s.vector {
		hits, err := s.scanArrays(ctx, model, q, opts.Supplier, k)
		res.Hits = hits
		return res, err
	}
	lit, err := quoteLiteral(model)
	if err != nil {
		return res, err
	}
	filter := ""
	if opts.Supplier != 0 {
		filter = fmt.Sprintf(" AND supplier_id = %d", opts.Supplier)
	}
	if opts.Exact {
		res.Method = MethodExact
		hits, err := s.queryHits(ctx, nil, fmt.Sprintf(exactSQL, lit, len(q), filter, 0, k), q)
		res.Hits = hits
		return res, err
	}
	parts, err := s.searchPartitions(ctx, model, len(q), opts.Supplier)
	if err != nil {
		return res, err
	}
	lists := 0
	for _, l := range parts {
		if l > 0 {
			res.Indexed++
			lists = max(lists, l)
		} else {
			res.Scanned++
		}
	}
	share := ProbeShare.Global
	if opts.Supplier != 0 {
		share = ProbeShare.Supplier
	}
	probes := opts.Probes
	if probes <= 0 {
		probes = probesFor(lists, share)
	}
	if res.Indexed > 0 {
		res.Method, res.Probes = MethodIndex, probes
	}
	sets := []string{
		fmt.Sprintf("SET LOCAL ivfflat.probes = %d", probes),
		"SET LOCAL ivfflat.iterative_scan = relaxed_order",
	}
	hits, err := s.queryHits(ctx, sets, fmt.Sprintf(searchSQL, lit, len(q), filter, max(4*k, 40), k), q)
	res.Hits = hits
	return res, err
}

// searchPartitions maps the supplier partitions a search reads (supplier's, or all when 0) to
// the lists of their valid ANN index of (model, dim), 0 for none.
func (s *Store) searchPartitions(ctx context.Context, model string, dim int, supplier int32) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT p.relname, coalesce((SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = p.oid AND i.indisvalid AND starts_with(c.relname, p.relname || $1) LIMIT 1), '')
		FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid
		WHERE h.inhparent = to_regclass('product_embeddings') AND ($2 = '' OR p.relname = $2)`,
		"_ann_"+modelTag(model, dim)+"_", partitionFilter(supplier))
	if err != nil {
		return nil, fmt.Errorf("search: list partitions: %w", err)
	}
	out := map[string]int{}
	var part, index string
	_, err = pgx.ForEachRow(rows, []any{&part, &index}, func() error {
		out[part] = 0
		if m := indexNameRE.FindStringSubmatch(index); m != nil {
			out[part], _ = strconv.Atoi(m[3])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: list partitions: %w", err)
	}
	return out, nil
}

func partitionFilter(supplier int32) string {
	if supplier == 0 {
		return ""
	}
	return PartitionName(supplier)
}

// queryHits runs a search query, in a transaction when it needs settings of its own.
func (s *Store) queryHits(ctx context.Context, sets []string, sql string, q []float32) ([]Hit, error) {
	hits := []Hit{}
	run := func(db interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}) error {
		rows, err := db.Query(ctx, sql, q)
		if err != nil {
			return err
		}
		var h Hit
		_, err = pgx.ForEachRow(rows, []any{&h.SupplierID, &h.ProductID, &h.SKU, &h.Name, &h.Score}, func() error {
			hits = append(hits, h)
			return nil
		})
		return err
	}
	var err error
	if len(sets) == 0 {
		err = run(s.pool)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			for _, set := range sets {
				if _, err := tx.Exec(ctx, set); err != nil {
					return err
				}
			}
			return run(tx)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return hits, nil
}

// scanArrays streams every real[] vector of model (of supplier) and keeps the best k in a heap:
// vectors are unit length, so the dot product is the cosine.
func (s *Store) scanArrays(ctx context.Context, model string, q []float32, supplier int32, k int) ([]Hit, error) {
	rows, err := s.pool.Query(ctx, `SELECT supplier_id, product_id, coalesce(sku, ''), coalesce(name, ''), embedding
		FROM product_embeddings
		WHERE model = $1 AND NOT deleted AND embedding IS NOT NULL AND ($2 = 0 OR supplier_id = $2)`, model, supplier)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	var (
		best hitHeap
		h    Hit
		vec  []float32
	)
	_, err = pgx.ForEachRow(rows, []any{&h.SupplierID, &h.ProductID, &h.SKU, &h.Name, &vec}, func() error {
		if len(vec) != len(q) {
			return nil
		}
		h.Score = float64(dot(q, vec))
		if len(best) < k {
			heap.Push(&best, h)
		} else if h.Score > best[0].Score {
			best[0] = h
			heap.Fix(&best, 0)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	out := make([]Hit, len(best))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&best).(Hit)
	}
	return out, nil
}
