package loader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// A reload into a partition that holds products runs as three goroutines, so that both cores
// work and the database writes while the client reads:
//
//	read:  parse and validate the drop, write the rejects        → rows
//	sort:  compare each row's digest with the stored row's; group
//	       the changed and new ones into chunks of staged rows    → COPY batches
//	write: COPY each chunk into the staging table, then MERGE it
//
// A chunk is merged while the next one is read. A sku whose earlier record is in a chunk
// already closed goes to the late pile instead (chunk 0), merged after the last chunk, so the
// last record still wins; such a product is written twice, once per chunk, which the counts
// report as a duplicate. Drops rarely repeat a sku.

// chunkRows is how many staged rows make a chunk: enough that the per-statement costs vanish,
// few enough that the MERGE of one chunk overlaps the reading of the next.
var chunkRows = 16384

const latePile = 0

// reloadColumns are the staging columns a reload fills.
var reloadColumns = append([]string{"chunk"}, stagingColumns...)

type item struct {
	row Row
	ok  bool // false: a rejected record that names its sku (--full)
}

// chunkMsg carries staged rows from sort to write; end closes the chunk they belong to.
type chunkMsg struct {
	rows [][]any
	end  int32 // the chunk this message closes, or 0
	dups bool  // with end: the chunk holds a sku more than once
}

// reload applies the drop to a partition whose products stored describes.
func reload(ctx context.Context, tx pgx.Tx, log *slog.Logger, rd Reader, opts Options, stored *storedRows, res *Result) error {
	start := time.Now()
	m, err := newMerger(ctx, tx, opts.Supplier)
	if err != nil {
		return err
	}
	// The chunk merges find products through the sku index, planned on the partition's
	// statistics. Stale ones (a bulk load into a new or truncated partition, not yet analyzed)
	// can make a full scan of another index look as cheap, once per staged row: then the
	// loader, which has just counted the products, brings them up to date.
	if n := int64(stored.n); n > 1000 && (stored.estimate < n/2 || stored.estimate > 2*n) {
		t := time.Now()
		if _, err := tx.Exec(ctx, "ANALYZE "+m.partition); err != nil {
			return fmt.Errorf("analyze %s: %w", m.partition, err)
		}
		log.Debug("load phase", "phase", "analyze", "planner estimate", stored.estimate, "products", n, "elapsed", time.Since(t))
	}
	g, gctx := errgroup.WithContext(ctx)
	items := make(chan []item, 8)
	msgs := make(chan chunkMsg, 64)
	var readErr, sortErr error // each written before its channel is closed, read after

	g.Go(func() error {
		defer close(items)
		batch := make([]item, 0, batchRows)
		send := func() error {
			select {
			case items <- batch:
			case <-gctx.Done():
				return gctx.Err()
			}
			batch = make([]item, 0, batchRows)
			return nil
		}
		readErr = readDrop(rd, opts, res, func(row *Row, ok bool) error {
			batch = append(batch, item{*row, ok})
			if len(batch) == batchRows {
				return send()
			}
			return nil
		})
		if readErr == nil && len(batch) > 0 {
			readErr = send()
		}
		return readErr
	})

	var late int64
	g.Go(func() error {
		defer close(msgs)
		s := sorter{stored: stored, out: msgs, ctx: gctx, chunk: 1}
		for batch := range items {
			for i := range batch {
				if err := s.add(&batch[i], res); err != nil {
					sortErr = err
					return err
				}
			}
		}
		if readErr != nil {
			sortErr = readErr
			return nil // read's error is the load's
		}
		sortErr = s.close()
		late = s.late
		return sortErr
	})

	var ins, upd, dups int64 // write's own counts: sort counts duplicates in res meanwhile
	g.Go(func() error {
		for {
			src := &chunkSource{ctx: gctx, ch: msgs, upstream: &sortErr}
			// ctx, not gctx: a failed read must end the COPY with CopyFail, which keeps the
			// connection usable, rather than cancel it.
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, reloadColumns, src); err != nil {
				return fmt.Errorf("copy into %s: %w", stagingTable, err)
			}
			if src.end.end != 0 {
				t := time.Now()
				n, err := applyChunk(ctx, tx, m, src.end)
				if err != nil {
					return err
				}
				log.Debug("merged chunk", "chunk", src.end.end, "inserted", n.inserted, "updated", n.updated, "duplicates", n.duplicates, "elapsed", time.Since(t))
				ins, upd, dups = ins+n.inserted, upd+n.updated, dups+n.duplicates
			}
			if src.closed {
				return nil
			}
		}
	})
	if err := g.Wait(); err != nil {
		return err
	}
	res.Duplicates += dups
	log.Debug("load phase", "phase", "stage and merge chunks", "staged", res.valid-res.skipped, "unchanged", res.skipped, "late", late, "elapsed", time.Since(start))

	// The late pile: each of its records overrides one already merged.
	if late > 0 {
		if _, err := dropOverridden(ctx, tx, latePile); err != nil {
			return err
		}
		if _, _, err := m.merge(ctx, tx, latePile); err != nil {
			return err
		}
		res.Duplicates += late
	}
	if opts.Full {
		// A product stays when a record matched it or the staging table names its sku
		// (changed, new, or rejected but named).
		tag, err := tx.Exec(ctx, `DELETE FROM `+m.partition+` p
			WHERE p.supplier_id = $1 AND p.id = ANY($2)
			AND NOT EXISTS (SELECT 1 FROM `+stagingTable+` s WHERE s.sku = p.sku)`,
			pgx.QueryExecModeExec, opts.Supplier, stored.unmatched())
		if err != nil {
			return fmt.Errorf("delete products absent from the drop: %w", err)
		}
		if err := checkFull(opts, tag.RowsAffected(), int64(stored.n), res); err != nil {
			return err
		}
	}
	res.Inserted, res.Updated = ins, upd
	res.Unchanged = res.valid - res.Duplicates - res.Inserted - res.Updated
	return nil
}

type chunkCounts struct{ inserted, updated, duplicates int64 }

// applyChunk merges one chunk: its overridden duplicates out first, then a MERGE that finds
// each row's product through the sku index. The settings hold for this statement only: the
// rest of the load joins whole tables.
func applyChunk(ctx context.Context, tx pgx.Tx, m *merger, end chunkMsg) (chunkCounts, error) {
	var n chunkCounts
	if end.dups {
		d, err := dropOverridden(ctx, tx, end.end)
		if err != nil {
			return n, err
		}
		n.duplicates = d
	}
	// The cost penalty that steers the planner off the sequential scans would also make a
	// plan of a few thousand rows look worth compiling with JIT (a tenth of a second).
	if _, err := tx.Exec(ctx, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off; SET LOCAL jit = off"); err != nil {
		return n, fmt.Errorf("set planner options: %w", err)
	}
	var err error
	n.inserted, n.updated, err = m.merge(ctx, tx, end.end)
	if err != nil {
		return n, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT; SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL jit TO DEFAULT"); err != nil {
		return n, fmt.Errorf("set planner options: %w", err)
	}
	return n, nil
}

// sorter decides, record by record, what goes to the staging table and in which chunk.
type sorter struct {
	ctx    context.Context
	stored *storedRows
	out    chan<- chunkMsg
	chunk  int32 // the chunk being filled
	inRows int   // its staged rows
	dups   bool  // it holds a sku twice
	late   int64 // records put on the late pile

	batch [][]any
	vals  []any
}

func (s *sorter) add(it *item, res *Result) error {
	chunk := s.chunk
	if it.ok {
		v := s.stored.observe(&it.row, s.chunk)
		if v.overrides {
			res.Duplicates++
		}
		switch {
		case !v.stage:
			res.skipped++
			return nil
		case v.late:
			chunk = latePile
			s.late++
		default:
			s.dups = s.dups || v.repeat
			s.inRows++
		}
	}
	if s.batch == nil {
		s.batch = make([][]any, 0, batchRows)
		s.vals = make([]any, 0, batchRows*len(reloadColumns))
	}
	s.vals = append(s.vals, chunk)
	s.vals = append(s.vals, stagingValues(&it.row, it.ok)...)
	s.batch = append(s.batch, s.vals[len(s.vals)-len(reloadColumns):len(s.vals):len(s.vals)])
	if len(s.batch) == batchRows {
		if err := s.send(chunkMsg{rows: s.batch}); err != nil {
			return err
		}
		s.batch, s.vals = nil, nil
	}
	if s.inRows == chunkRows {
		return s.closeChunk()
	}
	return nil
}

// closeChunk sends what is batched with the end of the chunk, and opens the next.
func (s *sorter) closeChunk() error {
	err := s.send(chunkMsg{rows: s.batch, end: s.chunk, dups: s.dups})
	s.batch, s.vals = nil, nil
	s.chunk, s.inRows, s.dups = s.chunk+1, 0, false
	return err
}

// close ends the last chunk.
func (s *sorter) close() error {
	if s.inRows == 0 && len(s.batch) == 0 {
		return nil
	}
	return s.closeChunk()
}

func (s *sorter) send(m chunkMsg) error {
	select {
	case s.out <- m:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// chunkSource feeds one COPY from the sorter's messages, up to the end of a chunk or of the
// drop.
type chunkSource struct {
	ctx      context.Context
	ch       <-chan chunkMsg
	upstream *error // the sorter's error, set before ch is closed
	rows     [][]any
	i        int
	end      chunkMsg // the message that ended this COPY with its chunk
	closed   bool
	err      error
}

func (s *chunkSource) Next() bool {
	s.i++
	for s.i >= len(s.rows) {
		if s.end.end != 0 {
			return false
		}
		select {
		case m, ok := <-s.ch:
			if !ok {
				s.closed, s.err = true, *s.upstream
				return false
			}
			s.rows, s.i = m.rows, 0
			if m.end != 0 {
				s.end = m
			}
		case <-s.ctx.Done():
			s.err = s.ctx.Err()
			return false
		}
	}
	return true
}

func (s *chunkSource) Values() ([]any, error) { return s.rows[s.i], nil }

func (s *chunkSource) Err() error { return s.err }
