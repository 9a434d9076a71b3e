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
//	read:  parse and validate the drop, write the rejects        → items
//	sort:  compare each row's digest with the stored row's; group
//	       the changed and new ones into chunks of staged rows    → COPY batches
//	write: COPY each chunk into the staging table, then MERGE it
//
// A chunk is merged while the next one is read, then the staging table is emptied, so each
// MERGE reads only its chunk. A record of a sku whose earlier record is in a chunk already
// closed goes to the late pile instead (chunk 0), kept aside and merged after the last chunk:
// the last record still wins, and a product is written at most twice. The second write is a
// duplicate in the counts. Drops rarely repeat a sku.
//
// With --full, the skus of every staged row are kept aside too: the products the drop names.

// chunkRows is how many staged rows make a chunk: enough that the per-statement costs vanish,
// few enough that the MERGE of one chunk overlaps the reading of the next.
var chunkRows = 16384

const latePile = 0

// The temporary tables a reload keeps aside: the late pile, and (with --full) the skus staged.
const (
	lateTable  = "tidemark_late"
	namedTable = "tidemark_named"
)

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
	if n := int64(len(stored.ids)); n > 1000 && (stored.estimate < n/2 || stored.estimate > 2*n) {
		t := time.Now()
		if _, err := tx.Exec(ctx, "ANALYZE "+m.partition); err != nil {
			return fmt.Errorf("analyze %s: %w", m.partition, err)
		}
		log.Debug("load phase", "phase", "analyze", "planner estimate", stored.estimate, "products", n, "elapsed", time.Since(t))
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+lateTable+` (LIKE `+stagingTable+`) ON COMMIT DROP;
		CREATE TEMP TABLE `+namedTable+` (sku text NOT NULL) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("create staging tables: %w", err)
	}
	planner, err := savePlanner(ctx, tx, "enable_hashjoin", "enable_mergejoin", "enable_seqscan", "jit")
	if err != nil {
		return err
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
		keys := make([]uint64, 0, batchRows)
		for batch := range items {
			// The batch's keys first, and their slots warmed: see storedRows.warm.
			keys = keys[:0]
			for i := range batch {
				keys = append(keys, stored.keyOfString(batch[i].row.SKU))
			}
			stored.warm(keys)
			for i := range batch {
				if err := s.add(&batch[i], keys[i], res); err != nil {
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
			copied, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, reloadColumns, src)
			if err != nil {
				return fmt.Errorf("copy into %s: %w", stagingTable, err)
			}
			if copied > 0 && src.end.end == 0 {
				// The sorter ends every chunk it sends rows of; rows without an end would
				// never be applied. Fail loudly rather than lose them.
				return fmt.Errorf("internal error: %d staged rows without a chunk end", copied)
			}
			if src.end.end != 0 {
				if err := gctx.Err(); err != nil {
					return err // the load has failed: no point merging
				}
				t := time.Now()
				n, err := applyChunk(ctx, tx, m, planner, src.end, opts.Full)
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

	if late > 0 {
		n, err := mergeLate(ctx, tx, m, late)
		if err != nil {
			return err
		}
		ins, upd, res.Duplicates = ins+n.inserted, upd+n.updated, res.Duplicates+n.duplicates
	}
	if opts.Full {
		// A product stays when a record matched it or the drop named its sku (changed,
		// new, or rejected but named).
		tag, err := tx.Exec(ctx, `DELETE FROM `+m.partition+` p
			WHERE p.supplier_id = $1 AND p.id = ANY($2)
			AND NOT EXISTS (SELECT 1 FROM `+namedTable+` s WHERE s.sku = p.sku)`,
			pgx.QueryExecModeExec, opts.Supplier, stored.unmatched())
		if err != nil {
			return fmt.Errorf("delete products absent from the drop: %w", err)
		}
		if err := checkFull(opts, tag.RowsAffected(), int64(len(stored.ids)), res); err != nil {
			return err
		}
	}
	res.Inserted, res.Updated = ins, upd
	res.Unchanged = res.valid - res.Duplicates - res.Inserted - res.Updated
	return nil
}

// mergeLate applies the late pile, last. Each of its records overrides an earlier one of its
// sku (a duplicate), but for a new sku the filter only thought it had seen (then it inserts),
// and for a product whose chunk record changed nothing (then this one is its update).
func mergeLate(ctx context.Context, tx pgx.Tx, m *merger, late int64) (chunkCounts, error) {
	var n chunkCounts
	if _, err := tx.Exec(ctx, `TRUNCATE `+stagingTable+`;
		INSERT INTO `+stagingTable+` SELECT * FROM `+lateTable); err != nil {
		return n, fmt.Errorf("stage the late pile: %w", err)
	}
	if _, err := dropOverridden(ctx, tx, latePile); err != nil {
		return n, err
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+stagingTable+` s
		JOIN `+m.partition+` p ON p.supplier_id = $1 AND p.sku = s.sku
		WHERE s.ok AND p.xmin <> pg_current_xact_id()::xid AND `+changedSQL, m.supplier).Scan(&n.updated); err != nil {
		return n, fmt.Errorf("count late updates: %w", err)
	}
	ins, _, err := m.merge(ctx, tx, latePile)
	if err != nil {
		return n, err
	}
	n.inserted, n.duplicates = ins, late-ins
	return n, nil
}

// checkFull refuses a --full load that deleted more than half the products, unless forced.
func checkFull(opts Options, deleted, total int64, res *Result) error {
	res.Deleted = deleted
	if !opts.Force && deleted*2 > total {
		return fmt.Errorf("%w: %d of %d absent from the drop (use --force if that is meant)",
			ErrFullWouldDeleteTooMuch, deleted, total)
	}
	return nil
}

type chunkCounts struct{ inserted, updated, duplicates int64 }

// applyChunk merges one chunk: its overridden duplicates out first, then a MERGE that finds
// each row's product through the sku index. Then it keeps aside the late rows and the skus
// named (with --full), and empties the staging table for the next chunk.
func applyChunk(ctx context.Context, tx pgx.Tx, m *merger, planner *plannerSettings, end chunkMsg, full bool) (chunkCounts, error) {
	var n chunkCounts
	if end.dups {
		d, err := dropOverridden(ctx, tx, end.end)
		if err != nil {
			return n, err
		}
		n.duplicates = d
	}
	// Nested loops over the sku index, for this statement only. The cost penalty that steers
	// the planner off sequential scans would also make a plan of a few thousand rows look
	// worth compiling with JIT (a tenth of a second).
	if err := planner.set(ctx, tx, "off", "off", "off", "off"); err != nil {
		return n, err
	}
	var err error
	if n.inserted, n.updated, err = m.merge(ctx, tx, end.end); err != nil {
		return n, err
	}
	if err := planner.restore(ctx, tx); err != nil {
		return n, err
	}
	keep := `INSERT INTO ` + lateTable + ` SELECT * FROM ` + stagingTable + ` WHERE chunk = 0;`
	if full {
		keep += `INSERT INTO ` + namedTable + ` SELECT sku FROM ` + stagingTable + `;`
	}
	if _, err := tx.Exec(ctx, keep+`TRUNCATE `+stagingTable); err != nil {
		return n, fmt.Errorf("empty the staging table: %w", err)
	}
	return n, nil
}

// plannerSettings are settings some statements change, and the values to put back.
type plannerSettings struct{ names, saved []string }

func savePlanner(ctx context.Context, tx pgx.Tx, names ...string) (*plannerSettings, error) {
	p := &plannerSettings{names: names}
	if err := tx.QueryRow(ctx, `SELECT array_agg(current_setting(n) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i)`,
		names).Scan(&p.saved); err != nil {
		return nil, fmt.Errorf("read planner settings: %w", err)
	}
	return p, nil
}

// set sets the settings, in order, until the transaction ends or restore.
func (p *plannerSettings) set(ctx context.Context, tx pgx.Tx, values ...string) error {
	if _, err := tx.Exec(ctx, `SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS t(n, v)`, p.names, values); err != nil {
		return fmt.Errorf("set planner settings: %w", err)
	}
	return nil
}

func (p *plannerSettings) restore(ctx context.Context, tx pgx.Tx) error {
	return p.set(ctx, tx, p.saved...)
}

// sorter decides, record by record, what goes to the staging table and in which chunk.
type sorter struct {
	ctx    context.Context
	stored *storedRows
	out    chan<- chunkMsg
	chunk  int32 // the chunk being filled
	inRows int   // its staged rows
	queued int   // rows sent or batched since the last end: late and named rows count too
	dups   bool  // it holds a sku twice
	late   int64 // records put on the late pile

	batch [][]any
	vals  []any
}

// add sorts a record; key is its sku's in the stored table.
func (s *sorter) add(it *item, key uint64, res *Result) error {
	chunk := s.chunk
	if it.ok {
		v := s.stored.observe(&it.row, key, s.chunk)
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
	r := &it.row
	s.vals = append(s.vals, chunk, r.Line, it.ok, r.SKU, r.Name, nullable(r.Description),
		nullable(r.Price), nullable(r.Currency), r.Status, r.Attributes)
	s.batch = append(s.batch, s.vals[len(s.vals)-len(reloadColumns):len(s.vals):len(s.vals)])
	s.queued++
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
	s.chunk, s.inRows, s.queued, s.dups = s.chunk+1, 0, 0, false
	return err
}

// close ends the last chunk. Rows sent since the last end, even late or named ones only,
// need an end of their own: the writer keeps them aside only when it applies a chunk.
func (s *sorter) close() error {
	if s.queued == 0 {
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

// chunkSource feeds one COPY from a channel of row batches, up to the end of a chunk or of
// the channel. ctx ends the wait for a batch: pgx waits for the source before it returns from
// a cancelled COPY, and the producer may be blocked reading its input.
type chunkSource struct {
	ctx      context.Context
	ch       <-chan chunkMsg
	upstream *error // the producer's error, set before ch is closed
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
