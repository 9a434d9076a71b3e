package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/event"
)

// SupplierStatus is where one supplier stands. Nothing in it costs a scan of products or
// product_embeddings: the products count is the partition's statistics, the vector counts are
// kept by triggers, loads and snapshots are recorded as they run, and what the encoders have
// not applied yet is read from the stream after their consumer's ack floor.
type SupplierStatus struct {
	ID        int32  `json:"id"`
	Name      string `json:"name"`
	Partition string `json:"partition"` // "" when the supplier has none
	// Products is PostgreSQL's estimate of the partition's live rows (pg_stat_user_tables),
	// exact after an insert-only load and within a sampling error after ANALYZE.
	Products int64 `json:"products_estimate"`
	// Vectors has one entry per embedding model found in product_embeddings.
	Vectors []SupplierVectors `json:"vectors"`
	// Stale counts the supplier's update and delete events in the stream that the consumer
	// has not applied yet: live vectors older than their product. Nil when the stream or the
	// consumer could not be read.
	Stale *int64 `json:"stale"`
	// OldestUnembedded is the commit time of the supplier's oldest change not yet applied to
	// the vectors (nil when there is none): the first of its events in the stream after the
	// consumer's ack floor, or the last load's when the replicator has not read that far.
	OldestUnembedded *time.Time    `json:"oldest_unembedded"`
	LastLoad         *LoadRecord   `json:"last_load"`
	LastSnapshot     *SnapshotInfo `json:"last_snapshot"`
}

// SupplierVectors counts one model's vectors of a supplier.
type SupplierVectors struct {
	Model   string `json:"model"`
	Live    int64  `json:"live"`
	Deleted int64  `json:"deleted"` // tombstones of deleted products
	// Missing estimates the products without a live vector: products minus live vectors.
	Missing int64 `json:"missing_estimate"`
}

// LoadRecord is what one `tidemark load` did, from tidemark_loads.
type LoadRecord struct {
	ID       int64     `json:"id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Full     bool      `json:"full"`
	catalog.LoadCounts
	// Products is the supplier's product count once the load committed (exact).
	Products int64 `json:"products"`
	// WALLSN is the WAL position just before the load's commit.
	WALLSN string `json:"wal_lsn"`
	// InStream says whether the replicator has confirmed past the load: false means its
	// changes are not in the stream yet. Nil when the slot could not be read.
	InStream *bool `json:"in_stream"`
}

// SnapshotInfo is the latest snapshot of a supplier, from tidemark_snapshots.
type SnapshotInfo struct {
	ID       string     `json:"id"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished"` // nil while it runs (or was interrupted)
	Rows     int64      `json:"rows"`
	Chunks   int        `json:"chunks"`
}

// supplierSQL reads each supplier with its products estimate, last load and last snapshot:
// index probes per supplier, nothing proportional to its products. $1 = 0 reads them all.
const supplierSQL = `
SELECT s.id, s.name, coalesce(c.relname, ''),
       (CASE WHEN coalesce(st.n_tup_ins + st.n_tup_del, 0) = 0 AND coalesce(st.n_live_tup, 0) = 0
             THEN greatest(coalesce(c.reltuples, 0), 0) ELSE st.n_live_tup END)::bigint,
       l.id, l.started_at, l.finished_at, l.full_drop, l.inserted, l.updated, l.unchanged, l.deleted,
       l.rejected, l.duplicates, l.products, l.wal_lsn::text,
       sn.id, sn.started_at, sn.finished_at, sn.rows, sn.chunks
FROM suppliers s
LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident('products_s' || s.id))
LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
LEFT JOIN LATERAL (SELECT * FROM tidemark_loads l WHERE l.supplier_id = s.id ORDER BY l.id DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT * FROM tidemark_snapshots t WHERE t.supplier_id = s.id
                   ORDER BY t.started_at DESC LIMIT 1) sn ON true
WHERE $1 = 0 OR s.id = $1
ORDER BY s.id`

// GatherSuppliers reads the per-supplier summary into s.Suppliers: every supplier, or only
// supplier id when id is not 0 (ErrUnknownSupplier when it does not exist). A database that
// is not migrated far enough leaves s.Suppliers nil.
func GatherSuppliers(ctx context.Context, pool *pgxpool.Pool, id int32, s *Status) error {
	var ready bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('tidemark_loads') IS NOT NULL
		AND to_regclass('tidemark_vector_counts') IS NOT NULL`).Scan(&ready); err != nil {
		return fmt.Errorf("look for the supplier tables: %w", err)
	}
	if !ready {
		return nil
	}
	rows, err := pool.Query(ctx, supplierSQL, id)
	if err != nil {
		return fmt.Errorf("read suppliers: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanSupplier)
	if err != nil {
		return fmt.Errorf("read suppliers: %w", err)
	}
	if id != 0 && len(list) == 0 {
		return fmt.Errorf("supplier %d: %w", id, ErrUnknownSupplier)
	}
	counts, err := vectorCounts(ctx, pool, id)
	if err != nil {
		return err
	}
	models, err := vectorModels(ctx, pool)
	if err != nil {
		return err
	}
	for i := range list {
		sup := &list[i]
		sup.Vectors = []SupplierVectors{}
		for _, m := range models {
			v := counts[supplierModel{sup.ID, m}]
			v.Model = m
			v.Missing = max(0, sup.Products-v.Live)
			sup.Vectors = append(sup.Vectors, v)
		}
		if l := sup.LastLoad; l != nil && s.Slot != nil {
			in := lsnAtLeast(s.Slot.ConfirmedLSN, l.WALLSN)
			l.InStream = &in
			if !in {
				// The replicator has not read the load yet: its changes are older than
				// anything of the supplier's in the stream.
				t := l.Finished
				sup.OldestUnembedded = &t
			}
		}
	}
	s.Suppliers = list
	return nil
}

func scanSupplier(r pgx.CollectableRow) (SupplierStatus, error) {
	var sup SupplierStatus
	var (
		loadID                                   *int64
		started, finished                        *time.Time
		full                                     *bool
		ins, upd, unch, del, rej, dups, products *int64
		walLSN                                   *string
		snapID                                   *string
		snapStarted, snapFinished                *time.Time
		snapRows                                 *int64
		snapChunks                               *int32
	)
	err := r.Scan(&sup.ID, &sup.Name, &sup.Partition, &sup.Products,
		&loadID, &started, &finished, &full, &ins, &upd, &unch, &del, &rej, &dups, &products, &walLSN,
		&snapID, &snapStarted, &snapFinished, &snapRows, &snapChunks)
	if err != nil {
		return sup, err
	}
	if loadID != nil {
		sup.LastLoad = &LoadRecord{ID: *loadID, Started: *started, Finished: *finished, Full: *full,
			LoadCounts: catalog.LoadCounts{Inserted: *ins, Updated: *upd, Unchanged: *unch, Deleted: *del, Rejected: *rej, Duplicates: *dups},
			Products:   *products, WALLSN: *walLSN}
	}
	if snapID != nil {
		sup.LastSnapshot = &SnapshotInfo{ID: *snapID, Started: *snapStarted, Finished: snapFinished,
			Rows: *snapRows, Chunks: int(*snapChunks)}
	}
	return sup, nil
}

type supplierModel struct {
	supplier int32
	model    string
}

func vectorCounts(ctx context.Context, pool *pgxpool.Pool, id int32) (map[supplierModel]SupplierVectors, error) {
	rows, err := pool.Query(ctx, `SELECT supplier_id, model, live, deleted FROM tidemark_vector_counts
		WHERE $1 = 0 OR supplier_id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("read vector counts: %w", err)
	}
	out := map[supplierModel]SupplierVectors{}
	var k supplierModel
	var v SupplierVectors
	_, err = pgx.ForEachRow(rows, []any{&k.supplier, &k.model, &v.Live, &v.Deleted}, func() error {
		out[k] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read vector counts: %w", err)
	}
	return out, nil
}

func vectorModels(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	models, err := column[string](ctx, pool, `SELECT DISTINCT model FROM tidemark_vector_counts ORDER BY model`)
	if err != nil {
		return nil, fmt.Errorf("read vector models: %w", err)
	}
	return models, nil
}

// lsnAtLeast compares two LSNs in PostgreSQL's text form; an unreadable one is not "at least".
func lsnAtLeast(a, b string) bool {
	x, errA := event.ParseLSN(a)
	y, errB := event.ParseLSN(b)
	return errA == nil && errB == nil && x >= y
}

// GatherSupplierQueue adds to s.Suppliers what consumer has not applied yet, from the stream
// after the consumer's ack floor: the stale count and the oldest unembedded change. It reads
// nothing per supplier when the consumer is caught up.
func GatherSupplierQueue(ctx context.Context, js jetstream.JetStream, stream, consumer string, s *Status) error {
	if len(s.Suppliers) == 0 {
		return nil
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cons, err := st.Consumer(ctx, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("stream %s has no consumer %s (has tidemark encode run?): %w", stream, consumer, err)
	}
	if err != nil {
		return fmt.Errorf("consumer %s of %s: %w", consumer, stream, err)
	}
	info := cons.CachedInfo()
	caughtUp := info.NumPending == 0 && info.NumAckPending == 0
	from := info.AckFloor.Stream + 1
	for i := range s.Suppliers {
		sup := &s.Suppliers[i]
		var stale int64
		if !caughtUp {
			q, err := supplierQueue(ctx, js, st, stream, from, sup.ID)
			if err != nil {
				return err
			}
			stale = q.stale
			if q.oldest != nil && (sup.OldestUnembedded == nil || q.oldest.Before(*sup.OldestUnembedded)) {
				sup.OldestUnembedded = q.oldest
			}
		}
		sup.Stale = &stale
	}
	return nil
}

type queued struct {
	stale  int64
	oldest *time.Time
}

// supplierQueue reads supplier's first event from sequence from on and counts its updates and
// deletes from there.
func supplierQueue(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, stream string, from uint64, supplier int32) (queued, error) {
	var q queued
	prefix := fmt.Sprintf("%s.%d.", event.SubjectPrefix, supplier)
	msg, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(prefix+">"))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return q, nil
	}
	if err != nil {
		return q, fmt.Errorf("read the first pending event of supplier %d: %w", supplier, err)
	}
	if ch, err := event.Decode(msg.Data); err == nil {
		t := ch.Source.CommitTS
		q.oldest = &t
	} else {
		t := msg.Time // not an event (it will be dead-lettered): when it was stored
		q.oldest = &t
	}
	if q.stale, err = countPending(ctx, js, stream, msg.Sequence, fmt.Sprint(supplier)); err != nil {
		return q, err
	}
	return q, nil
}

// countPending counts the update and delete events of suppliers (a supplier ID, or * for all)
// from stream sequence from on, through short-lived consumers that hold nothing and are
// deleted at once (one per subject: servers before 2.10 take one filter per consumer).
func countPending(ctx context.Context, js jetstream.JetStream, stream string, from uint64, suppliers string) (int64, error) {
	var n int64
	for _, op := range []event.Op{event.OpUpdate, event.OpDelete} {
		c, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       from,
			FilterSubject:     event.SubjectPrefix + "." + suppliers + "." + string(op),
			AckPolicy:         jetstream.AckNonePolicy,
			InactiveThreshold: time.Minute,
			MemoryStorage:     true,
			Replicas:          1,
		})
		if err != nil {
			return 0, fmt.Errorf("count pending events of suppliers %s: %w", suppliers, err)
		}
		n += int64(c.CachedInfo().NumPending)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		// Left behind, it is removed by the server after InactiveThreshold anyway.
		_ = js.DeleteConsumer(dctx, stream, c.CachedInfo().Name)
		cancel()
	}
	return n, nil
}
