package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/replication"
)

// DefaultChunkSize is the number of rows read per chunk.
const DefaultChunkSize = 2000

// DefaultMaxWait bounds the wait, per chunk, for transactions that were running at its low
// watermark. It stays below replication.WindowExpiry, after which the replicator gives up on
// a window (so a snapshot that died cannot hold the slot's WAL for ever).
const DefaultMaxWait = replication.WindowExpiry / 2

// ErrWaitedTooLong means a long-running transaction held a chunk up for Options.MaxWait.
var ErrWaitedTooLong = errors.New("snapshot waited too long for running transactions")

// Options tunes a snapshot.
type Options struct {
	// ChunkSize is the number of rows per chunk; default DefaultChunkSize.
	ChunkSize int
	// Progress, when set, is called after each chunk with the rows read so far and the total
	// the supplier had when the snapshot began.
	Progress func(done, total int64)
	// Log receives progress and waits; default discards.
	Log *slog.Logger
	// MaxWait bounds the wait for transactions running at a chunk's low watermark; default
	// DefaultMaxWait. Keep it below replication.WindowExpiry.
	MaxWait time.Duration
	// NewEpoch abandons the supplier's unfinished snapshot, if any, and opens a new epoch that
	// reads the supplier from the start. Set it when changes may have been lost since that
	// snapshot's epoch opened (a replication slot lost and re-created): resuming would keep
	// products deleted in the gap whose rows the earlier run had already read.
	NewEpoch bool
}

// Result describes a finished snapshot of one supplier.
type Result struct {
	ID         string `json:"id"`
	SupplierID int32  `json:"supplier_id"`
	// Epoch is the snapshot's epoch in the stream (see replication.EpochMessage).
	Epoch   string `json:"epoch"`
	Chunks  int    `json:"chunks"`
	Rows    int64  `json:"rows"`
	Resumed bool   `json:"resumed"` // an interrupted run's epoch was carried on
}

// Supplier snapshots supplier id's products as one epoch in the stream: it opens the epoch,
// writes every row to the WAL in chunks, and closes the epoch, which is when subscribers (and
// tidemark encode) drop the supplier's products the epoch did not carry — those deleted while
// the deletes did not reach them. It returns once the close is written; the replicator
// publishes the rows as it reaches them.
//
// An unfinished snapshot of the supplier is resumed, in the same epoch, after its last chunk:
// that is right after a crash of the snapshot or the replicator. After changes were lost (a
// replication slot re-created), set Options.NewEpoch.
func Supplier(ctx context.Context, pool *pgxpool.Pool, id int32, opts Options) (Result, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxWait <= 0 || opts.MaxWait > DefaultMaxWait {
		opts.MaxWait = DefaultMaxWait
	}
	res := Result{SupplierID: id}
	var lastID, untilID int64
	var chunk int
	var epochID, openLSN *string
	resumed, err := Begin(ctx, pool, id)
	if err != nil {
		return res, err
	}
	err = pool.QueryRow(ctx, `SELECT id, last_id, until_id, chunks, rows, epoch_id, open_lsn::text FROM tidemark_snapshots
		WHERE supplier_id = $1 AND finished_at IS NULL`, id).Scan(&res.ID, &lastID, &untilID, &chunk, &res.Rows, &epochID, &openLSN)
	if err != nil {
		return res, fmt.Errorf("look up snapshot of supplier %d: %w", id, err)
	}
	if epochID == nil || openLSN == nil || opts.NewEpoch {
		if epochID != nil {
			opts.Log.Info("abandoning the unfinished snapshot epoch for a new one", "epoch", *epochID, "supplier", id)
		}
		e, until, err := openEpoch(ctx, pool, opts, res.ID, id)
		if err != nil {
			return res, fmt.Errorf("snapshot %s: %w", res.ID, err)
		}
		if err := pool.QueryRow(ctx, "SELECT open_lsn::text FROM tidemark_snapshots WHERE id = $1", res.ID).Scan(&openLSN); err != nil {
			return res, fmt.Errorf("snapshot %s: %w", res.ID, err)
		}
		epochID, untilID, lastID, chunk, res.Rows = &e, until, 0, 0, 0
	} else if resumed && chunk > 0 {
		res.Resumed = true
		opts.Log.Info("resuming snapshot", "snapshot", res.ID, "epoch", *epochID, "supplier", id, "after_id", lastID, "rows", res.Rows)
	}
	res.Epoch = *epochID
	var total int64
	if opts.Progress != nil {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM products WHERE supplier_id = $1 AND id <= $2", id, untilID).Scan(&total); err != nil {
			return res, fmt.Errorf("count products of supplier %d: %w", id, err)
		}
		opts.Progress(res.Rows, total)
	}
	cols, err := columns(ctx, pool)
	if err != nil {
		return res, err
	}
	for {
		chunk++
		n, next, err := readChunk(ctx, pool, opts, res.ID, res.Epoch, chunk, id, lastID, untilID, cols)
		if err != nil {
			return res, fmt.Errorf("snapshot %s chunk %d: %w", res.ID, chunk, err)
		}
		if n == 0 {
			break
		}
		res.Chunks++
		res.Rows += int64(n)
		lastID = next
		if opts.Progress != nil {
			opts.Progress(res.Rows, max(total, res.Rows))
		}
	}
	if err := closeEpoch(ctx, pool, res.ID, res.Epoch, *openLSN, id, res.Rows); err != nil {
		return res, err
	}
	return res, nil
}

// Begin records a snapshot of supplier id as requested, unless one is already unfinished
// (then it reports true): recorded snapshots survive a crash, so a plan of many suppliers
// resumes whole. Supplier calls it; call it ahead to record a plan before running it.
func Begin(ctx context.Context, pool *pgxpool.Pool, id int32) (existed bool, err error) {
	return begin(ctx, pool, id)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func begin(ctx context.Context, db execer, id int32) (existed bool, err error) {
	tag, err := db.Exec(ctx, `INSERT INTO tidemark_snapshots (id, supplier_id, until_id)
		VALUES ($1, $2, (SELECT coalesce(max(id), 0) FROM products WHERE supplier_id = $2))
		ON CONFLICT (supplier_id) WHERE finished_at IS NULL DO NOTHING`,
		fmt.Sprintf("s%d-%d", id, time.Now().UnixNano()), id)
	if err != nil {
		return false, fmt.Errorf("start snapshot of supplier %d: %w", id, err)
	}
	return tag.RowsAffected() == 0, nil
}

// Restart records, in one transaction, a snapshot of every supplier in ids from its first row:
// unfinished snapshots are dropped and begun again, since the chunks they wrote to the WAL may
// be lost with a slot (a resync), and the rest begin. Supplier then runs them; a crash
// part-way through them resumes where they stopped.
func Restart(ctx context.Context, pool *pgxpool.Pool, ids []int32) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM tidemark_snapshots WHERE finished_at IS NULL"); err != nil {
			return fmt.Errorf("drop unfinished snapshots: %w", err)
		}
		for _, id := range ids {
			if _, err := begin(ctx, tx, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unfinished lists the suppliers whose recorded snapshot has not finished, in order.
func Unfinished(ctx context.Context, pool *pgxpool.Pool) ([]int32, error) {
	var ids []int32
	err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(supplier_id ORDER BY supplier_id), '{}')
		FROM tidemark_snapshots WHERE finished_at IS NULL`).Scan(&ids)
	if err != nil {
		return nil, fmt.Errorf("read unfinished snapshots (has tidemark migrate run?): %w", err)
	}
	return ids, nil
}

// columns reads products' columns and type OIDs, in table order.
func columns(ctx context.Context, pool *pgxpool.Pool) ([]replication.SnapshotColumn, error) {
	rows, err := pool.Query(ctx, `SELECT attname, atttypid FROM pg_attribute
		WHERE attrelid = 'products'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	if err != nil {
		return nil, fmt.Errorf("read products columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (replication.SnapshotColumn, error) {
		var c replication.SnapshotColumn
		err := r.Scan(&c.Name, &c.Type)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read products columns: %w", err)
	}
	return cols, nil
}

// readChunk writes the low watermark, waits until every transaction that might have committed
// before it is visible, then reads up to ChunkSize rows after lastID and writes them as the
// chunk message, with the progress, in one transaction. It returns the rows read and the last
// id. Rows above untilID were inserted after the snapshot began and reach the stream anyway.
func readChunk(ctx context.Context, pool *pgxpool.Pool, opts Options, snapID, epochID string, chunk int,
	supplier int32, lastID, untilID int64, cols []replication.SnapshotColumn) (int, int64, error) {
	// The chunk's last id, read before the window opens: the replicator then remembers only
	// changes of the chunk's own keys while it is open.
	var end *int64
	err := pool.QueryRow(ctx, `SELECT max(id) FROM (SELECT id FROM products WHERE supplier_id = $1 AND id > $2 AND id <= $3
		ORDER BY id LIMIT $4) c`, supplier, lastID, untilID, opts.ChunkSize).Scan(&end)
	if err != nil {
		return 0, 0, fmt.Errorf("find the chunk's range: %w", err)
	}
	chunkEnd := untilID
	if end != nil {
		chunkEnd = *end
	}
	// The epoch names the window, so the replicator knows which epoch a lost chunk spoils.
	low, err := json.Marshal(replication.SnapshotLow{ID: epochID, Chunk: chunk, Supplier: int64(supplier), After: lastID, Until: chunkEnd})
	if err != nil {
		return 0, 0, err
	}
	if _, err := pool.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", replication.SnapshotLowPrefix, string(low)); err != nil {
		return 0, 0, fmt.Errorf("write low watermark: %w", err)
	}
	if err := waitForInProgress(ctx, pool, opts.Log, opts.MaxWait); err != nil {
		return 0, 0, err
	}

	selectList := make([]string, len(cols))
	for i, c := range cols {
		// Qualified, so ORDER BY p.id sorts the bigint, not this text output column.
		selectList[i] = "p." + pgx.Identifier{c.Name}.Sanitize() + "::text"
	}
	query := fmt.Sprintf("SELECT %s FROM products p WHERE p.supplier_id = $1 AND p.id > $2 AND p.id <= $3 ORDER BY p.id LIMIT $4",
		strings.Join(selectList, ", "))
	idCol := -1
	for i, c := range cols {
		if c.Name == "id" {
			idCol = i
		}
	}
	if idCol < 0 {
		return 0, 0, errors.New("products has no id column")
	}

	var n int
	var next int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, query, supplier, lastID, chunkEnd, opts.ChunkSize)
		if err != nil {
			return fmt.Errorf("read chunk: %w", err)
		}
		msg := replication.SnapshotChunk{ID: epochID, Chunk: chunk, Schema: "public", Table: "products", Columns: cols}
		for rows.Next() {
			vals := make([]*string, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return fmt.Errorf("read chunk: %w", err)
			}
			msg.Rows = append(msg.Rows, vals)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read chunk: %w", err)
		}
		n = len(msg.Rows)
		content, err := json.Marshal(msg)
		if err != nil {
			return err
		}
		// Written even when empty: it closes the low watermark's window in the replicator.
		if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", replication.SnapshotChunkPrefix, string(content)); err != nil {
			return fmt.Errorf("write chunk: %w", err)
		}
		if n == 0 {
			return nil
		}
		if _, err := fmt.Sscan(*msg.Rows[n-1][idCol], &next); err != nil {
			return fmt.Errorf("chunk's last id %q: %w", *msg.Rows[n-1][idCol], err)
		}
		_, err = tx.Exec(ctx, `UPDATE tidemark_snapshots SET last_id = $2, chunks = chunks + 1, rows = rows + $3
			WHERE id = $1`, snapID, next, n)
		return err
	})
	return n, next, err
}

// waitForInProgress waits until every transaction running now has ended. A transaction's
// commit record reaches the WAL a moment before the transaction becomes visible to new
// snapshots; without this wait, one that committed just before the low watermark could be
// invisible to the chunk read while its change event precedes the window, and the chunk would
// then republish the older row after it. Like CREATE INDEX CONCURRENTLY, a long-running
// transaction holds the snapshot up: it is logged.
func waitForInProgress(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, maxWait time.Duration) error {
	var xids []string
	err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(x::text), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x`).Scan(&xids)
	if err != nil {
		return fmt.Errorf("read running transactions: %w", err)
	}
	if len(xids) == 0 {
		return nil
	}
	start := time.Now()
	lastLog := start
	for {
		var running []string
		err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(x), '{}') FROM unnest($1::text[]) x
			WHERE pg_xact_status(x::xid8) = 'in progress'`, xids).Scan(&running)
		if err != nil {
			return fmt.Errorf("check running transactions: %w", err)
		}
		if len(running) == 0 {
			return nil
		}
		xids = running
		if time.Since(start) > maxWait {
			return fmt.Errorf("transactions %v ran for over %s while the snapshot waited for them; retry when they end: %w", running, maxWait, ErrWaitedTooLong)
		}
		if time.Since(lastLog) > 10*time.Second {
			log.Warn("snapshot waiting for transactions to end", "xids", running, "waited", time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
