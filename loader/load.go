package loader

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/catalog"
	"golang.org/x/sync/errgroup"
)

// Options tune a load.
type Options struct {
	// Supplier is the supplier the drop belongs to; its partition is created when missing.
	Supplier int32
	// Full means the drop is the supplier's whole catalogue: products whose sku it lacks are
	// deleted.
	Full bool
	// Force lets a Full load delete more than half of the supplier's products.
	Force bool
	// MaxRejects fails the load (nothing written) when more records are rejected; negative
	// means no limit.
	MaxRejects int
	// Rejects receives one JSON object per rejected record ({"line", "reason", "record"});
	// nil discards them.
	Rejects io.Writer
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
}

// Result counts what a load did.
type Result struct {
	catalog.LoadCounts
	Seconds float64 `json:"seconds"`
	// RowsPerSecond is the records read (loaded or rejected) per second of the whole load.
	RowsPerSecond float64 `json:"rows_per_second"`

	valid     int64 // valid records, duplicates included
	skipped   int64 // valid records left out of the staging table: equal to their stored row
	maybeDups bool  // a direct load's sku filter saw a sku that may have come before
}

// Records is every record the drop held.
func (r Result) Records() int64 {
	return r.Inserted + r.Updated + r.Unchanged + r.Rejected + r.Duplicates
}

// lockKey is the advisory lock that serialises loads of one supplier.
func lockKey(supplier int32) int64 { return 0x746c_0000_0000_0000 | int64(uint32(supplier)) }

// batchRows is how many rows travel together from the parser to COPY: large enough that the
// channel costs nothing per row, small enough that memory stays flat.
const batchRows = 1024

const stagingTable = "tidemark_staging"

var stagingColumns = []string{"line", "ok", "sku", "name", "description", "price", "currency", "status", "attributes"}

// productColumns are the columns a load writes straight into products.
var productColumns = []string{"supplier_id", "sku", "name", "description", "price", "currency", "status", "attributes"}

// DB is what a load needs of a connection: a transaction of its own.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Load reads the drop from rd and applies it for opts.Supplier in one transaction: either
// everything is applied or nothing is.
func Load(ctx context.Context, db DB, rd Reader, opts Options) (Result, error) {
	start := time.Now()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Supplier <= 0 {
		return Result{}, fmt.Errorf("supplier %d: %w", opts.Supplier, catalog.ErrBadSupplierID)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// Room for the staging table in local buffers, so it does not spill to a file. temp_buffers
	// cannot change once the session has used a temporary table (a pooled connection may
	// have): then the load goes on with what the session has.
	if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
		return Result{}, fmt.Errorf("set session limits: %w", err)
	}
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, "SET LOCAL temp_buffers = '256MB'")
		return err
	})
	if err != nil && ctx.Err() != nil {
		return Result{}, fmt.Errorf("set session limits: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(opts.Supplier)); err != nil {
		return Result{}, fmt.Errorf("lock supplier %d: %w", opts.Supplier, err)
	}
	if err := catalog.AddSupplier(ctx, tx, opts.Supplier, ""); err != nil {
		return Result{}, err
	}
	// The drop is applied against the partition as it stands now: a reload compares it with
	// digests read first, and a write committed by another session meanwhile would be
	// judged on stale ones. So other writers wait for the load; readers (replication,
	// encoders, searches) do not.
	partition := pgx.Identifier{catalog.PartitionName(opts.Supplier)}.Sanitize()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+partition+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return Result{}, fmt.Errorf("lock %s: %w", partition, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+stagingTable+` (
		chunk integer NOT NULL DEFAULT 0, line bigint NOT NULL, ok boolean NOT NULL, sku text NOT NULL, name text, description text,
		price text, currency text, status text, attributes text) ON COMMIT DROP`); err != nil {
		return Result{}, fmt.Errorf("create staging table: %w", err)
	}

	// Into an empty partition, rows go straight in with COPY: no staging, no second write.
	// A sku the filter may have seen before (a duplicate) is set aside in a temporary file
	// instead, and applied afterwards over the row that came first, so the last one wins.
	var direct bool
	if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+partition+")").Scan(&direct); err != nil {
		return Result{}, fmt.Errorf("look into partition: %w", err)
	}
	var res Result
	var before int64 // products of the supplier when the load began
	if direct {
		if err := loadDirect(ctx, tx, log, rd, opts, &res); err != nil {
			return Result{}, err
		}
		log.Debug("copied", "rows", res.Inserted, "duplicates", res.Duplicates, "rejected", res.Rejected, "elapsed", time.Since(start))
	} else {
		t := time.Now()
		stored, err := readStored(ctx, tx, partition)
		if err != nil {
			return Result{}, err
		}
		log.Debug("load phase", "phase", "read digests", "products", len(stored.ids), "elapsed", time.Since(t))
		before = int64(len(stored.ids))
		if err := reload(ctx, tx, log, rd, opts, stored, &res); err != nil {
			return Result{}, err
		}
	}
	if err := recordLoad(ctx, tx, opts, &res, before); err != nil {
		return Result{}, err
	}
	t := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("commit: %w", err)
	}
	log.Debug("load phase", "phase", "commit", "elapsed", time.Since(t))
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.RowsPerSecond = float64(res.Records()) / res.Seconds
	}
	return res, nil
}

// copyProducts streams the drop straight into products, the rows whose sku may have come
// before going to the spill file: one goroutine reads and validates, COPY encodes and sends,
// with a small bounded channel between them.
func copyProducts(ctx context.Context, tx pgx.Tx, rd Reader, opts Options, spill *spillFile, res *Result) error {
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan chunkMsg, 4)
	var parseErr error
	src := &chunkSource{ctx: ctx, ch: batches, upstream: &parseErr}
	g.Go(func() error {
		parseErr = parse(gctx, rd, opts, spill, res, batches)
		// Through the source, a parse error ends the COPY with CopyFail, which keeps the
		// connection usable; the channel close publishes it to COPY's goroutine.
		close(batches)
		return parseErr
	})
	g.Go(func() error {
		// ctx, not gctx: a failed parse must not cancel the query and close the connection.
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"products"}, productColumns, src); err != nil {
			return fmt.Errorf("copy into products: %w", err)
		}
		return nil
	})
	err := g.Wait()
	// Not whichever error came first: COPY fails with the server's echo of a parse error
	// ("COPY from stdin failed: ..."), which has lost its type, and it can come before the
	// parse goroutine returns. A parse that stopped because COPY failed has only the
	// cancellation to say.
	if parseErr != nil && !errors.Is(parseErr, context.Canceled) {
		return parseErr
	}
	return err
}

// readDrop reads and validates every record and writes the rejects. Each valid row goes to
// emit with ok true; with a --full drop, so does each rejected record whose sku could be
// read, with ok false: a bad record must not delete its product.
func readDrop(rd Reader, opts Options, res *Result, emit func(row *Row, ok bool) error) error {
	var rejects *bufio.Writer
	if opts.Rejects != nil {
		rejects = bufio.NewWriterSize(opts.Rejects, 64<<10)
	}
	flush := func() error {
		if rejects == nil {
			return nil
		}
		if err := rejects.Flush(); err != nil {
			return fmt.Errorf("write rejects: %w", err)
		}
		return nil
	}
	for rec, err := range Records(rd) {
		if err != nil {
			_ = flush()
			return fmt.Errorf("read drop: %w", err)
		}
		row, reason := Validate(rec)
		if reason == "" {
			res.valid++
			if err := emit(&row, true); err != nil {
				return err
			}
			continue
		}
		res.Rejected++
		if rejects != nil {
			if err := writeReject(rejects, rec.Line, reason, rd.Raw()); err != nil {
				return err
			}
		}
		if opts.MaxRejects >= 0 && res.Rejected > int64(opts.MaxRejects) {
			_ = flush()
			return fmt.Errorf("%w: more than %d (the last at line %d: %s)", ErrTooManyRejects, opts.MaxRejects, rec.Line, reason)
		}
		if opts.Full && rec.Fields[colSKU] != "" && checkText(rec.Fields[colSKU]) == "" {
			named := Row{Line: rec.Line, SKU: rec.Fields[colSKU]}
			if err := emit(&named, false); err != nil {
				return err
			}
		}
	}
	return flush()
}

// parse sends the drop's rows to COPY in batches, for products; the rows whose sku may have
// come before go to the spill file instead.
func parse(ctx context.Context, rd Reader, opts Options, spill *spillFile, res *Result, out chan<- chunkMsg) error {
	// Rows and their values are allocated per batch, in one slab each: COPY is done with a
	// batch when it asks for the next.
	var (
		batch [][]any
		vals  []any
	)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case out <- chunkMsg{rows: batch}:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch, vals = nil, nil
		return nil
	}
	ncol := len(productColumns)
	seen := newSKUFilter()
	err := readDrop(rd, opts, res, func(row *Row, ok bool) error {
		if !ok {
			return nil // an empty partition has no product to keep
		}
		maybeSeen := seen.add(row.SKU)
		res.maybeDups = res.maybeDups || maybeSeen
		if maybeSeen {
			return spill.write(*row)
		}
		if batch == nil {
			batch = make([][]any, 0, batchRows)
			vals = make([]any, 0, batchRows*ncol)
		}
		status := row.Status
		if status == "" {
			status = "pending"
		}
		vals = append(vals, opts.Supplier, row.SKU, row.Name, nullable(row.Description),
			priceNumeric(row.Price), nullable(row.Currency), status, row.Attributes)
		batch = append(batch, vals[len(vals)-ncol:len(vals):len(vals)])
		if len(batch) == batchRows {
			return send()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return send()
}

func nullable(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func writeReject(w *bufio.Writer, line int64, reason string, raw json.RawMessage) error {
	b, err := json.Marshal(struct {
		Line   int64           `json:"line"`
		Reason string          `json:"reason"`
		Record json.RawMessage `json:"record"`
	}{line, reason, raw})
	if err != nil {
		return fmt.Errorf("encode reject: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write rejects: %w", err)
	}
	return nil
}
