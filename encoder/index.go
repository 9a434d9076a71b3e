package encoder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The ANN index is IVFFlat over the vectors cast to halfvec, one per model on each supplier's
// partition of product_embeddings. Measured on a 2-core machine (README, Search): HNSW answers
// as fast for the same recall but maintains itself at a few hundred rows/s under the encoders'
// upserts, an order below what they write; IVFFlat keeps up with them (an insert is a
// nearest-centroid lookup and an append). halfvec halves the index against vector for the same
// recall; binary quantization loses the hash embedder's sparse vectors.
const (
	// IndexMinVectors is the size from which a partition gets its index: below it an exact scan
	// of the partition is fast, and k-means over so few rows would make poor lists.
	IndexMinVectors = 5000
	// indexGrowth rebuilds an index once the lists its partition's vectors call for are this
	// many times the lists it has: the lists stay near their best size, and the rebuilds of a
	// growing partition cost a constant factor of its size.
	indexGrowth = 2
)

// PartitionName is supplier's partition of product_embeddings.
func PartitionName(supplier int32) string { return fmt.Sprintf("product_embeddings_s%d", supplier) }

// modelTag identifies (model, dim) in index names, which must stay under 64 bytes.
func modelTag(model string, dim int) string {
	h := sha256.Sum256([]byte(model + "\x00" + strconv.Itoa(dim)))
	return hex.EncodeToString(h[:4])
}

// IndexName is the name of model's index on supplier's partition with lists lists.
func IndexName(supplier int32, model string, dim, lists int) string {
	return fmt.Sprintf("%s_ann_%s_%d", PartitionName(supplier), modelTag(model, dim), lists)
}

var indexNameRE = regexp.MustCompile(`^product_embeddings_s(-?\d+)_ann_([0-9a-f]{8})_(\d+)$`)

// listsFor sizes the lists of an index over n vectors, as pgvector advises: n/1000 up to a
// million, √n beyond. Fewer lists make an insert cheaper (it compares the vector with every
// list's centre); a query reads the same share of the vectors either way.
func listsFor(n int64) int {
	if n <= 1_000_000 {
		return int(max(10, n/1000))
	}
	return min(8000, int(math.Sqrt(float64(n))))
}

// ProbeShare is the share of a partition's lists a query reads by default (SearchOptions.Probes
// overrides it): a global query merges every partition's best, so each needs fewer of its
// lists than a supplier-scoped query, whose ten must all come from one partition. Chosen for
// recall@10 ≥ 0.95 on the benchmark's catalogue (README, Search).
var ProbeShare = struct{ Global, Supplier float64 }{Global: 0.25, Supplier: 0.5}

// probesFor is how many of lists lists a query reads, for a share of them.
func probesFor(lists int, share float64) int {
	return max(1, min(lists, int(math.Ceil(float64(lists)*share))))
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings, the default
// since PostgreSQL 9.1): a partial index is only used by a query whose WHERE clause names
// its model literally, so search and index builds inline it.
func quoteLiteral(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("model %q: contains NUL", s)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

// IndexState is where one partition's index of a model stands.
type IndexState string

// The states of an index.
const (
	IndexBuilt    IndexState = "built"
	IndexBuilding IndexState = "building"
	IndexMissing  IndexState = "missing" // the partition is big enough and has none: searches scan it
	IndexSmall    IndexState = "small"   // fewer than IndexMinVectors vectors: scanned, by design
	IndexInvalid  IndexState = "invalid" // a build that failed; the next build drops it
)

// PartitionIndex is one supplier partition's index of a model.
type PartitionIndex struct {
	Supplier int32      `json:"supplier_id"`
	Vectors  int64      `json:"vectors"` // live vectors of the model (the planner's estimate when Estimated)
	State    IndexState `json:"state"`
	Name     string     `json:"index,omitempty"`
	Lists    int        `json:"lists,omitempty"`
	Bytes    int64      `json:"bytes,omitempty"`
	Progress string     `json:"progress,omitempty"` // while building: the phase and how far it is
	Stale    bool       `json:"stale,omitempty"`    // grown to need indexGrowth × its lists: rebuild
}

// ModelIndex is the ANN index of one model over every supplier partition.
type ModelIndex struct {
	Model      string           `json:"model"`
	Dim        int              `json:"dim"`
	State      IndexState       `json:"state"` // built when no partition is missing, invalid or building
	Partitions []PartitionIndex `json:"partitions"`
}

// indexRow is an ANN index found in the catalogue.
type indexRow struct {
	supplier int32
	tag      string
	lists    int
	name     string
	valid    bool
	bytes    int64
	progress string
}

// partitionIndexes lists the ANN indexes on product_embeddings' partitions, with the progress
// of the ones being built.
func (s *Store) partitionIndexes(ctx context.Context) ([]indexRow, error) {
	// An index dropped while this reads (a rebuild replacing it) has no size: it is left out.
	rows, err := s.pool.Query(ctx, `SELECT c.relname, i.indisvalid, pg_relation_size(c.oid),
			coalesce((SELECT p.phase || CASE WHEN p.tuples_total > 0
				THEN ' ' || round(100.0 * p.tuples_done / p.tuples_total) || '%'
				WHEN p.blocks_total > 0 THEN ' ' || round(100.0 * p.blocks_done / p.blocks_total) || '%' ELSE '' END
				FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid), '')
		FROM pg_inherits h
		JOIN pg_index i ON i.indrelid = h.inhrelid
		JOIN pg_class c ON c.oid = i.indexrelid
		WHERE h.inhparent = to_regclass('product_embeddings') AND c.relname LIKE 'product\_embeddings\_s%\_ann\_%'`)
	if err != nil {
		return nil, fmt.Errorf("list vector indexes: %w", err)
	}
	var out []indexRow
	var name, progress string
	var valid bool
	var size *int64
	_, err = pgx.ForEachRow(rows, []any{&name, &valid, &size, &progress}, func() error {
		m := indexNameRE.FindStringSubmatch(name)
		if m == nil || size == nil {
			return nil
		}
		sup, _ := strconv.ParseInt(m[1], 10, 32)
		lists, _ := strconv.Atoi(m[3])
		out = append(out, indexRow{supplier: int32(sup), tag: m[2], lists: lists, name: name, valid: valid, bytes: *size, progress: progress})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list vector indexes: %w", err)
	}
	return out, nil
}

// partitionVectors counts the live vectors of model per supplier partition: exactly when
// exact, else from the planner's row estimates (one catalogue read, whatever the table's size;
// a partition never analysed is counted).
func (s *Store) partitionVectors(ctx context.Context, model string, dim int, exact bool) (map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT p.relname, p.reltuples::bigint FROM pg_inherits h
		JOIN pg_class p ON p.oid = h.inhrelid WHERE h.inhparent = to_regclass('product_embeddings')`)
	if err != nil {
		return nil, fmt.Errorf("list vector partitions: %w", err)
	}
	type part struct {
		name string
		est  int64
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (part, error) {
		var p part
		err := r.Scan(&p.name, &p.est)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list vector partitions: %w", err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		sup, err := strconv.ParseInt(strings.TrimPrefix(p.name, "product_embeddings_s"), 10, 32)
		if err != nil {
			continue
		}
		n := p.est
		if exact || n < 0 {
			if err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE model = $1 AND dim = $2 AND NOT deleted`,
				pgx.Identifier{p.name}.Sanitize()), model, dim).Scan(&n); err != nil {
				return nil, fmt.Errorf("count vectors of %s: %w", p.name, err)
			}
		}
		out[int32(sup)] = n
	}
	return out, nil
}

// Index reports model's ANN index on every supplier partition. Vector counts are the planner's
// estimates unless exact.
func (s *Store) Index(ctx context.Context, model string, dim int, exact bool) (ModelIndex, error) {
	mi := ModelIndex{Model: model, Dim: dim, State: IndexBuilt}
	if !s.vector {
		mi.State = IndexMissing
		return mi, nil
	}
	counts, err := s.partitionVectors(ctx, model, dim, exact)
	if err != nil {
		return mi, err
	}
	idx, err := s.partitionIndexes(ctx)
	if err != nil {
		return mi, err
	}
	tag := modelTag(model, dim)
	for sup, n := range counts {
		pi := PartitionIndex{Supplier: sup, Vectors: n, State: IndexSmall}
		if n >= IndexMinVectors {
			pi.State = IndexMissing
		}
		for _, r := range idx {
			if r.supplier != sup || r.tag != tag {
				continue
			}
			switch {
			case r.progress != "":
				pi.State, pi.Name, pi.Lists, pi.Progress = IndexBuilding, r.name, r.lists, r.progress
			case r.valid && pi.State != IndexBuilding:
				pi.State, pi.Name, pi.Lists, pi.Bytes = IndexBuilt, r.name, r.lists, r.bytes
				pi.Stale = listsFor(n) >= indexGrowth*r.lists
			case !r.valid && pi.State != IndexBuilding && pi.State != IndexBuilt:
				pi.State, pi.Name = IndexInvalid, r.name
			}
		}
		mi.Partitions = append(mi.Partitions, pi)
	}
	sortPartitions(mi.Partitions)
	for _, p := range mi.Partitions {
		switch p.State {
		case IndexBuilding:
			mi.State = IndexBuilding
		case IndexMissing, IndexInvalid:
			if mi.State != IndexBuilding {
				mi.State = IndexMissing
			}
		}
	}
	return mi, nil
}

func sortPartitions(ps []PartitionIndex) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Supplier < ps[j-1].Supplier; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// indexLockKey serialises builds of one model's index on one partition across processes.
func indexLockKey(supplier int32, model string, dim int) int64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%d", supplier, model, dim)))
	var k int64
	for _, b := range h[:8] {
		k = k<<8 | int64(b)
	}
	return k
}

// BuildIndex builds model's index on supplier's partition with CREATE INDEX CONCURRENTLY, so
// encoders and searches go on meanwhile, calling progress about every 250 ms with the
// build's phase (from pg_stat_progress_create_index). It drops what a failed build left, sizes
// the lists for the partition's vectors and, once the new index is valid, drops the one it
// replaces. With force it builds a new one even when the current one fits. It returns the
// index's name; ErrIndexBusy when another session builds it.
func (s *Store) BuildIndex(ctx context.Context, model string, dim int, supplier int32, force bool, progress func(string)) (string, error) {
	if !s.vector {
		return "", errors.New("product_embeddings stores real[]: an index needs pgvector (tidemark migrate --vectors pgvector)")
	}
	if dim <= 0 {
		return "", fmt.Errorf("dimension %d: want a positive one", dim)
	}
	lit, err := quoteLiteral(model)
	if err != nil {
		return "", err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	key := indexLockKey(supplier, model, dim)
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		return "", fmt.Errorf("lock index build: %w", err)
	}
	if !locked {
		return "", ErrIndexBusy
	}
	defer unlockIndexBuild(context.WithoutCancel(ctx), conn, key)

	part := PartitionName(supplier)
	var n int64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE model = $1 AND dim = $2 AND NOT deleted",
		pgx.Identifier{part}.Sanitize()), model, dim).Scan(&n); err != nil {
		return "", fmt.Errorf("count vectors of %s: %w", part, err)
	}
	lists := listsFor(n)
	idx, err := s.partitionIndexes(ctx)
	if err != nil {
		return "", err
	}
	tag := modelTag(model, dim)
	for _, r := range idx {
		if force && r.supplier == supplier && r.tag == tag && r.lists == lists {
			lists++ // a new name beside the one it replaces
		}
	}
	name := IndexName(supplier, model, dim, lists)
	var old []string
	for _, r := range idx {
		if r.supplier != supplier || r.tag != tag {
			continue
		}
		if r.name == name && r.valid {
			return name, nil
		}
		if !r.valid {
			// What a failed or killed build left: invalid, and still maintained by every write.
			if err := execStoppable(ctx, conn, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{r.name}.Sanitize(), nil); err != nil {
				return "", fmt.Errorf("drop invalid index %s: %w", r.name, err)
			}
			continue
		}
		old = append(old, r.name)
	}
	stmt := fmt.Sprintf(`CREATE INDEX CONCURRENTLY %s ON %s USING ivfflat ((embedding::halfvec(%d)) halfvec_cosine_ops)
		WITH (lists = %d) WHERE model = %s AND dim = %d`,
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{part}.Sanitize(), dim, lists, lit, dim)
	var report func()
	if progress != nil {
		report = func() {
			var phase string
			err := s.pool.QueryRow(ctx, `SELECT p.phase || CASE WHEN p.tuples_total > 0
					THEN ' ' || round(100.0 * p.tuples_done / p.tuples_total) || '%' ELSE '' END
				FROM pg_stat_progress_create_index p WHERE p.relid = to_regclass($1)`, part).Scan(&phase)
			if err == nil {
				progress(phase)
			}
		}
	}
	if err := execStoppable(ctx, conn, stmt, report); err != nil {
		return "", fmt.Errorf("create index %s: %w", name, err)
	}
	for _, o := range old {
		if err := execStoppable(ctx, conn, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{o}.Sanitize(), nil); err != nil {
			return name, fmt.Errorf("drop replaced index %s: %w", o, err)
		}
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("COMMENT ON INDEX %s IS %s", pgx.Identifier{name}.Sanitize(),
		mustQuote(fmt.Sprintf("tidemark: ANN index of model %s (%d dimensions), %d vectors at build", model, dim, n)))); err != nil {
		return name, fmt.Errorf("comment on index %s: %w", name, err)
	}
	return name, nil
}

// unlockIndexBuild releases the build's lock. A cancel sent to stop the build can land on
// this statement instead, when the build had just ended (PostgreSQL delivers it to whatever
// runs when it arrives), so the unlock is tried twice; a connection still holding the lock
// is closed rather than returned to the pool, which would keep every later build busy.
func unlockIndexBuild(ctx context.Context, conn *pgxpool.Conn, key int64) {
	for range 2 {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err == nil || conn.Conn().IsClosed() {
			return
		}
	}
	_ = conn.Conn().Close(ctx)
}

// execStoppable runs a long statement (a concurrent index build or drop) on conn, calling
// tick about every 250 ms when it is not nil. When ctx ends first, it asks the server to
// cancel the statement and waits until it has: pgx answers a cancelled context by closing
// the connection, which left the server building, and holding the build's lock, after
// BuildIndex had returned, so that a build started at once was refused as busy. Only when
// the server does not answer the cancel within 30 s is the connection closed instead.
func execStoppable(ctx context.Context, conn *pgxpool.Conn, sql string, tick func()) error {
	execCtx, closeConn := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConn()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(execCtx, sql)
		done <- err
	}()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ticker.C:
			if tick != nil {
				tick()
			}
		case <-ctx.Done():
			grace, cancel := context.WithTimeout(execCtx, 30*time.Second)
			defer cancel()
			if err := conn.Conn().PgConn().CancelRequest(grace); err != nil {
				closeConn()
			}
			select {
			case <-done:
			case <-grace.Done():
				closeConn()
				<-done
			}
			return ctx.Err()
		}
	}
}

// Models lists the models with vectors, in name order. It reads the table's distinct models
// (a scan: for doctor and tools, not for a hot path).
func (s *Store) Models(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT model FROM product_embeddings ORDER BY model")
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	models, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return models, nil
}

// ModelDim is the dimension of model's vectors, from the table.
func (s *Store) ModelDim(ctx context.Context, model string) (int, error) {
	var d *int
	if err := s.pool.QueryRow(ctx, "SELECT dim FROM product_embeddings WHERE model = $1 AND dim IS NOT NULL LIMIT 1", model).Scan(&d); err != nil {
		return 0, fmt.Errorf("read the dimension of %s: %w", model, err)
	}
	if d == nil {
		return 0, fmt.Errorf("no vectors of model %s yet (run tidemark encode first)", model)
	}
	return *d, nil
}

func mustQuote(s string) string {
	q, err := quoteLiteral(s)
	if err != nil {
		return "''"
	}
	return q
}

// MaintainIndexes keeps model's index on every partition that needs one, until ctx ends:
// every interval it builds the missing ones and rebuilds the stale ones, one at a time,
// concurrently with the encoders' writes. Several encoders may run it: a build another one
// holds is skipped.
func (s *Store) MaintainIndexes(ctx context.Context, model string, dim int, interval time.Duration, log *slog.Logger) error {
	if !s.vector {
		log.Warn("product_embeddings stores real[]: every search scans; tidemark migrate --vectors pgvector makes it indexable")
		return nil
	}
	for {
		if dim <= 0 {
			// The dimension of a remote model is known from its first vector.
			dim, _ = s.ModelDim(ctx, model)
		}
		if dim > 0 {
			if err := s.maintainOnce(ctx, model, dim, log); err != nil && ctx.Err() == nil {
				log.Warn("index maintenance", "model", model, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func (s *Store) maintainOnce(ctx context.Context, model string, dim int, log *slog.Logger) error {
	mi, err := s.Index(ctx, model, dim, false)
	if err != nil {
		return err
	}
	for _, p := range mi.Partitions {
		if p.State != IndexMissing && p.State != IndexInvalid && !p.Stale {
			continue
		}
		start := time.Now()
		// The state comes from the planner's row estimates (every model's rows): the build
		// counts exactly and may find the index current after all.
		log.Debug("checking vector index", "model", model, "supplier", p.Supplier, "vectors", p.Vectors, "was", p.State)
		last := time.Now()
		name, err := s.BuildIndex(ctx, model, dim, p.Supplier, false, func(phase string) {
			if time.Since(last) >= 10*time.Second {
				last = time.Now()
				log.Info("building vector index", "model", model, "supplier", p.Supplier, "phase", phase)
			}
		})
		if errors.Is(err, ErrIndexBusy) {
			continue
		}
		if err != nil {
			return err
		}
		if name == p.Name {
			continue
		}
		log.Info("vector index built", "model", model, "supplier", p.Supplier, "index", name, "seconds", time.Since(start).Seconds())
	}
	return nil
}
