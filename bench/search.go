package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// searchSuppliers is how many suppliers the search stage spreads its products over.
const searchSuppliers = 10

// searchQueries is how many different queries each latency figure is taken over.
const searchQueries = 60

// searchRounds is how many times each query is timed: the spread of the rounds' p50 is the
// machine's noise.
const searchRounds = 3

// SearchSettings size the search stage's PostgreSQL as the README tells users to size theirs:
// the vectors and their indexes in shared_buffers, builds in memory, one parallel worker per
// spare core.
var SearchSettings = map[string]string{
	"shared_buffers":                   "4GB",
	"maintenance_work_mem":             "1GB",
	"max_parallel_maintenance_workers": "1",
	"effective_cache_size":             "8GB",
	"work_mem":                         "64MB",
	"max_wal_size":                     "8GB",
}

// The search stage: N products over ten suppliers, their insert events in a stream, and
//
//  1. the encoders writing every vector with no index (the baseline of 4.);
//  2. tidemark index building each supplier partition's IVFFlat index: time and size;
//  3. search latency p50/p99 over 60 queries, global and supplier-scoped, through the index
//     (the Store's SearchWith, as an application runs it: a pooled connection), and recall@10
//     against the exact scan of the same queries;
//  4. the encoders writing every vector again (the vectors deleted, the indexes kept and
//     maintained by each insert): their products/s against 1.;
//  5. latency and recall again, of the index the encoders maintained.
//
// It runs its own PostgreSQL, sized by SearchSettings, with pgvector (required).
func benchSearch(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	n := env.Rows
	var drops []*fakedrop.Drop
	for id := int32(1); id <= searchSuppliers; id++ {
		// A seed per supplier: suppliers of one trade sell different products.
		d := fakedrop.New(fakedrop.Suppliers[int(id-1)%len(fakedrop.Suppliers)], benchSeed+uint64(id))
		drops = append(drops, d)
		if _, err := copyProducts(ctx, db.Pool, id, d.Products(share(n, searchSuppliers, id))); err != nil {
			return nil, err
		}
	}
	const stream = "BENCH_SEARCH"
	js, closeJS, err := env.insertStream(ctx, db.Pool, stream)
	if err != nil {
		return nil, err
	}
	defer closeJS()
	emb, _ := encoder.NewHash(encoder.DefaultDim)
	args := []string{"encode", "--pg-url", db.URL, "--nats-url", env.NATS.URL(), "--stream", stream, "--http-addr", "",
		"--log-level", "warn", "--workers", "2", "--index-interval", "0"}

	env.Log.Info("search: encoding without an index")
	cpu0 := clusterCPU(db.PG.DataDir())
	plainSecs, _, err := timeEncode(ctx, db.Pool, js, stream, "plain", env.Bin, append(args, "--consumer", "plain"), emb.Model(), n)
	if err != nil {
		return nil, err
	}
	plainCPU := clusterCPU(db.PG.DataDir()) - cpu0
	if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE product_embeddings"); err != nil {
		return nil, err
	}
	var tableBytes int64
	if err := db.Pool.QueryRow(ctx, `SELECT sum(pg_table_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'product_embeddings'::regclass`).Scan(&tableBytes); err != nil {
		return nil, err
	}

	env.Log.Info("search: tidemark index")
	cpu0 = clusterCPU(db.PG.DataDir())
	build, err := runProcess(ctx, env.Bin, "index", "--pg-url", db.URL, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	buildCPU := clusterCPU(db.PG.DataDir()) - cpu0
	// Searches run on a pool of one connection, so that its server process's CPU time can be
	// read per query.
	scfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return nil, err
	}
	scfg.MaxConns, scfg.MinConns = 1, 1
	spool, err := pgxpool.NewWithConfig(ctx, scfg)
	if err != nil {
		return nil, err
	}
	defer spool.Close()
	var backend int
	if err := spool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, err
	}
	store, err := encoder.OpenStore(ctx, spool)
	if err != nil {
		return nil, err
	}
	searcher := &searcher{store: store, backend: backend}
	mi, err := store.Index(ctx, emb.Model(), emb.Dim(), true)
	if err != nil {
		return nil, err
	}
	var indexBytes int64
	for _, p := range mi.Partitions {
		if p.State != encoder.IndexBuilt && p.State != encoder.IndexSmall {
			return nil, fmt.Errorf("after tidemark index, supplier %d's index is %s", p.Supplier, p.State)
		}
		indexBytes += p.Bytes
	}
	results := []Result{
		{Stage: "search: encode, no index", Rows: n, Seconds: plainSecs, Rate: float64(n) / plainSecs, CPUSeconds: plainCPU.Seconds(),
			Note: fmt.Sprintf("%d suppliers, 2 workers; vector table %s; PostgreSQL CPU %.1f s", searchSuppliers, mib(tableBytes), plainCPU.Seconds())},
		{Stage: "search: tidemark index", Rows: n, Seconds: build.Elapsed.Seconds(), Rate: float64(n) / build.Elapsed.Seconds(), CPUSeconds: buildCPU.Seconds(),
			Note: fmt.Sprintf("IVFFlat on halfvec, %d partitions, %d lists each, %s; PostgreSQL CPU %.1f s", len(mi.Partitions), maxLists(mi), mib(indexBytes), buildCPU.Seconds())},
	}
	logResults(env, results...)
	queries := searchTexts(drops)
	vecs, _ := emb.Embed(ctx, queries)
	measured, truth, err := searcher.measure(ctx, emb.Model(), n, vecs, nil, 0, 0, searchRounds)
	if err != nil {
		return nil, err
	}
	results = append(results, measured...)
	logResults(env, measured...)
	// The trade-off around the default: fewer and more lists read.
	lists := maxLists(mi)
	for _, share := range []float64{1.0 / 16, 1.0 / 8, 1.0 / 2} {
		if probes := int(float64(lists) * share); probes > 0 {
			sweep, _, err := searcher.measure(ctx, emb.Model(), n, vecs, truth, probes, lists, 1)
			if err != nil {
				return nil, err
			}
			results = append(results, sweep...)
			logResults(env, sweep...)
		}
	}

	env.Log.Info("search: encoding again with the indexes maintained")
	if _, err := db.Pool.Exec(ctx, "DELETE FROM product_embeddings"); err != nil {
		return nil, err
	}
	if _, err := db.Pool.Exec(ctx, "VACUUM product_embeddings"); err != nil {
		return nil, err
	}
	cpu0 = clusterCPU(db.PG.DataDir())
	idxSecs, _, err := timeEncode(ctx, db.Pool, js, stream, "indexed", env.Bin, append(args, "--consumer", "indexed"), emb.Model(), n)
	if err != nil {
		return nil, err
	}
	idxCPU := clusterCPU(db.PG.DataDir()) - cpu0
	results = append(results, Result{Stage: "search: encode, index maintained", Rows: n, Seconds: idxSecs, Rate: float64(n) / idxSecs,
		Baseline: "the same run without an index", BaselineSeconds: plainSecs, Ratio: idxSecs / plainSecs, CPUSeconds: idxCPU.Seconds(),
		Note: fmt.Sprintf("every vector inserted again into the built indexes (the target: ≥ 3,000 products/s); PostgreSQL CPU %.1f s, %.2f× the run without",
			idxCPU.Seconds(), idxCPU.Seconds()/plainCPU.Seconds())})
	logResults(env, results[len(results)-1])
	if _, err := db.Pool.Exec(ctx, "ANALYZE product_embeddings"); err != nil {
		return nil, err
	}
	again, _, err := searcher.measure(ctx, emb.Model(), n, vecs, truth, 0, 0, 1)
	if err != nil {
		return nil, err
	}
	for i := range again {
		again[i].Stage += ", after the encoders"
	}
	logResults(env, again...)
	return append(results, again...), nil
}

// logResults logs figures as they are taken: the stage runs for many minutes, and a run that
// fails or is stopped late still shows what it measured.
func logResults(env *Env, rs ...Result) {
	for _, r := range rs {
		env.Log.Info("search: measured", "figure", r.Stage, "seconds", r.Seconds, "rate", r.Rate, "cpu_seconds", r.CPUSeconds, "note", r.Note)
	}
}

// searchTexts are the queries: what a shopper types, from the products' own words (a kind of
// product with a colour or a feature), each different.
func searchTexts(drops []*fakedrop.Drop) []string {
	r := rand.New(rand.NewPCG(benchSeed, 14))
	seen := map[string]bool{}
	var out []string
	for len(out) < searchQueries {
		d := drops[r.IntN(len(drops))]
		p := d.Product(r.IntN(1000))
		words := strings.Fields(strings.ToLower(p.Name))
		q := strings.Join(words[max(0, len(words)-2):], " ")
		switch r.IntN(3) {
		case 0:
			q = p.Attributes.Color + " " + q
		case 1:
			if len(p.Attributes.Tags) > 0 {
				q = p.Attributes.Tags[0] + " " + q
			}
		case 2:
			q += " " + strings.ToLower(p.Attributes.Category)
		}
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	return out
}

// searcher times searches through a Store on a pool of one connection, whose server process
// is backend.
type searcher struct {
	store   *encoder.Store
	backend int
}

func maxLists(mi encoder.ModelIndex) int {
	lists := 0
	for _, p := range mi.Partitions {
		lists = max(lists, p.Lists)
	}
	return lists
}

// measure times every query through the index, global and scoped to a supplier (query i to
// supplier 1 + i % 10), rounds times after one untimed pass (the plan and the caches warm),
// reading probes lists of each index (0: the default; lists is the indexes' for the label), with
// the server's CPU time of each query; and computes recall@10 against the exact scan (computed
// once, then reused as truth). A hit counts when its exact score reaches the exact 10th's:
// ties are common among catalogue texts, and any of them is a right answer.
func (s *searcher) measure(ctx context.Context, model string, n int, vecs [][]float32, truth [][]encoder.Hit, probes, lists, rounds int) ([]Result, [][]encoder.Hit, error) {
	var out []Result
	if truth == nil {
		truth = make([][]encoder.Hit, 2*len(vecs))
	}
	for scope := 0; scope < 2; scope++ {
		var lat, cpu, roundP50 []float64
		found, total := 0, 0
		var exactSecs float64
		opts := func(i int) encoder.SearchOptions {
			o := encoder.SearchOptions{K: 10, Probes: probes}
			if scope == 1 {
				o.Supplier = int32(1 + i%searchSuppliers)
			}
			return o
		}
		for i, q := range vecs {
			r, err := s.store.SearchWith(ctx, model, q, opts(i))
			if err != nil {
				return nil, nil, err
			}
			if r.Method != encoder.MethodIndex && r.Indexed+r.Scanned > 0 && n >= searchSuppliers*encoder.IndexMinVectors {
				return nil, nil, fmt.Errorf("query %d searched by %s, not the index", i, r.Method)
			}
		}
		for round := 0; round < rounds; round++ {
			var rl []float64
			for i, q := range vecs {
				c0, start := procCPU(s.backend), time.Now()
				r, err := s.store.SearchWith(ctx, model, q, opts(i))
				if err != nil {
					return nil, nil, err
				}
				ms := float64(time.Since(start).Microseconds()) / 1000
				cpu = append(cpu, float64(procCPU(s.backend)-c0)/1e6)
				lat, rl = append(lat, ms), append(rl, ms)
				if round > 0 {
					continue
				}
				t := &truth[scope*len(vecs)+i]
				if *t == nil {
					o := opts(i)
					o.Exact = true
					start := time.Now()
					e, err := s.store.SearchWith(ctx, model, q, o)
					if err != nil {
						return nil, nil, err
					}
					exactSecs += time.Since(start).Seconds()
					*t = e.Hits
				}
				if len(*t) == 0 {
					return nil, nil, errors.New("the exact scan found nothing")
				}
				floor := (*t)[len(*t)-1].Score - 1e-6
				for _, h := range r.Hits {
					if h.Score >= floor {
						found++
					}
				}
				total += len(*t)
			}
			slices.Sort(rl)
			roundP50 = append(roundP50, rl[len(rl)/2])
		}
		slices.Sort(lat)
		slices.Sort(cpu)
		slices.Sort(roundP50)
		p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
		name := "search: global"
		if scope == 1 {
			name = "search: supplier-scoped"
		}
		if probes > 0 {
			name += fmt.Sprintf(", probes %d of %d", probes, lists)
		}
		recall := float64(found) / float64(total)
		spread := ""
		if rounds > 1 {
			spread = fmt.Sprintf(" (the %d rounds' p50 %.1f–%.1f ms)", rounds, roundP50[0], roundP50[len(roundP50)-1])
		}
		note := fmt.Sprintf("p50 %.1f ms, p99 %.1f ms over %d queries × %d%s; server CPU p50 %.1f ms, p99 %.1f ms; recall@10 %.3f (targets: p50 ≤ 20 ms, p99 ≤ 100 ms, recall ≥ 0.95)",
			p50, p99, len(vecs), rounds, spread, cpu[len(cpu)/2], cpu[(len(cpu)*99+99)/100-1], recall)
		res := Result{Stage: name, Rows: len(vecs), Seconds: p50 / 1000, Rate: 1000 / p50, CPUSeconds: cpu[len(cpu)/2] / 1000, Note: note}
		if exactSecs > 0 {
			res.Baseline = "exact scan (--exact)"
			res.BaselineSeconds = exactSecs / float64(len(vecs))
			res.Ratio = res.Seconds / res.BaselineSeconds
		}
		out = append(out, res)
	}
	return out, truth, nil
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
