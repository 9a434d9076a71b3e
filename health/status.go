package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// Status is where the pipeline stands. A nil part was not found or could not be read; Problems
// says why when that makes the pipeline unhealthy.
type Status struct {
	Slot       *Slot       `json:"slot"`
	Checkpoint *Checkpoint `json:"checkpoint"`
	Stream     *Stream     `json:"stream"`
	Consumers  []Consumer  `json:"consumers"`
	Vectors    *Vectors    `json:"vectors"`
	// Suppliers is where each supplier stands (GatherSuppliers); nil before migration 0006.
	Suppliers []SupplierStatus `json:"suppliers"`
	// SlotLost is why the slot is lost (one of replication.LostReasons), empty when it is not:
	// the changes after the checkpoint are gone from the WAL.
	SlotLost string   `json:"slot_lost,omitempty"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`

	// What CheckLost compares: the slot as read (slotRead, slotMissing; neither when it could
	// not be read) and the server's origin ("" on a standby; originErr when it could not be
	// read).
	slotRead    *replication.Slot
	slotMissing bool
	origin      string
	originErr   error
}

// Checkpoint is the LSN the replicator saved in the checkpoint bucket.
type Checkpoint struct {
	Bucket   string    `json:"bucket"`
	Key      string    `json:"key"`
	LSN      string    `json:"lsn"`
	Revision uint64    `json:"revision"`
	Saved    time.Time `json:"saved"`
	// Origin is the server the checkpoint was taken on (system identifier/timeline), empty
	// when none is saved.
	Origin string `json:"origin,omitempty"`
}

// Stream is the state of the JetStream stream.
type Stream struct {
	Name      string    `json:"name"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_time"`
	Consumers int       `json:"consumer_count"`
	Replicas  int       `json:"replicas"`
}

// Consumer is the state of one consumer of the stream.
type Consumer struct {
	Name string `json:"name"`
	// Pending is the number of messages not yet delivered to the consumer.
	Pending uint64 `json:"pending"`
	// AckPending is the number delivered and not yet acknowledged.
	AckPending  int `json:"ack_pending"`
	Redelivered int `json:"redelivered"`
	// Waiting is the number of pull requests waiting: a sign of live workers.
	Waiting      int       `json:"waiting"`
	LastDelivery time.Time `json:"last_delivery,omitzero"`
}

// Vectors counts the rows of product_embeddings.
type Vectors struct {
	Live    int64         `json:"live"`
	Deleted int64         `json:"deleted"`
	Models  []ModelCounts `json:"models"`
}

// ModelCounts counts one embedding model's rows, with its ANN index.
type ModelCounts struct {
	Model   string        `json:"model"`
	Live    int64         `json:"live"`
	Deleted int64         `json:"deleted"`
	Index   *IndexSummary `json:"index"` // nil when the table cannot say (not migrated)
}

// IndexSummary is where a model's ANN index stands over the supplier partitions.
type IndexSummary struct {
	// State is built, building or missing (some partition big enough has none: searches of
	// it scan), or unavailable when the vectors are real[] (every search scans).
	State string `json:"state"`
	Dim   int    `json:"dim,omitempty"`
	// Partitions counts the supplier partitions holding the model's vectors; Built, Building,
	// Missing and Small (below encoder.IndexMinVectors, scanned by design) split them.
	Partitions int      `json:"partitions"`
	Built      int      `json:"built"`
	Building   int      `json:"building"`
	Missing    int      `json:"missing"`
	Small      int      `json:"small"`
	Bytes      int64    `json:"bytes"`
	Progress   []string `json:"progress,omitempty"` // "supplier 3: loading tuples 45%"
}

// NewStatus is an empty status, healthy until a problem is added.
func NewStatus() *Status {
	return &Status{Consumers: []Consumer{}, Problems: []string{}, Healthy: true}
}

// Problem records why the pipeline is not healthy.
func (s *Status) Problem(format string, args ...any) {
	s.Healthy = false
	s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
}

// GatherPostgres reads the slot and the vector counts. A stopped replicator is healthy as long
// as its slot retains less than opts.LagWarn bytes.
func GatherPostgres(ctx context.Context, pool *pgxpool.Pool, opts Options, s *Status) {
	opts = opts.withDefaults()
	r, err := replication.ReadSlot(ctx, pool, opts.Slot)
	switch {
	case errors.Is(err, replication.ErrNoSlot):
		s.slotMissing = true
	case err != nil:
		s.Problem("%v", err)
	default:
		s.slotRead = &r
		s.origin, s.originErr = replication.ServerOrigin(ctx, pool)
		slot := slotOf(r)
		s.Slot = slot
		switch {
		case r.Invalidated():
			// Lost, which CheckLost reports as replicate decides it; its lag says nothing more.
		case !slot.Active && slot.LagBytes > opts.LagWarn:
			s.Problem("slot %s is inactive with %s of WAL behind (over %s): is tidemark replicate running?",
				slot.Name, FormatBytes(slot.LagBytes), FormatBytes(opts.LagWarn))
		}
	}
	v, err := vectors(ctx, pool)
	if err != nil {
		s.Problem("%v", err)
	}
	s.Vectors = v
}

func vectors(ctx context.Context, pool *pgxpool.Pool) (*Vectors, error) {
	var exists, counted bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('product_embeddings') IS NOT NULL,
		to_regclass('tidemark_vector_counts') IS NOT NULL`).Scan(&exists, &counted); err != nil {
		return nil, fmt.Errorf("look for product_embeddings: %w", err)
	}
	if !exists {
		return nil, nil
	}
	// The counts the triggers keep (migration 0006) cost a row per supplier and model; before
	// them, counting means reading every vector.
	query := `SELECT model, sum(live)::bigint, sum(deleted)::bigint FROM tidemark_vector_counts
		GROUP BY model HAVING sum(live) + sum(deleted) > 0 ORDER BY model`
	if !counted {
		query = `SELECT model, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
		FROM product_embeddings GROUP BY model ORDER BY model`
	}
	rows, err := pool.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("count vectors: %w", err)
	}
	models, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ModelCounts, error) {
		var m ModelCounts
		err := r.Scan(&m.Model, &m.Live, &m.Deleted)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("count vectors: %w", err)
	}
	v := &Vectors{Models: models}
	if v.Models == nil {
		v.Models = []ModelCounts{}
	}
	if store, err := encoder.OpenStore(ctx, pool); err == nil {
		for i := range v.Models {
			idx, err := IndexOf(ctx, store, v.Models[i].Model)
			if err != nil {
				return v, err
			}
			v.Models[i].Index = idx
		}
	}
	for _, m := range models {
		v.Live += m.Live
		v.Deleted += m.Deleted
	}
	return v, nil
}

// GatherNATS reads the saved checkpoint, the stream and its consumers.
func GatherNATS(ctx context.Context, js jetstream.JetStream, opts Options, s *Status) {
	opts = opts.withDefaults()
	kv, err := js.KeyValue(ctx, opts.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		s.Problem("checkpoint bucket %s: %v", opts.Bucket, err)
	default:
		e, err := kv.Get(ctx, opts.Slot)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			s.Problem("checkpoint %s/%s: %v", opts.Bucket, opts.Slot, err)
		default:
			s.Checkpoint = &Checkpoint{Bucket: opts.Bucket, Key: opts.Slot, LSN: strings.TrimSpace(string(e.Value())),
				Revision: e.Revision(), Saved: e.Created()}
			switch o, err := kv.Get(ctx, sink.OriginKey(opts.Slot)); {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				s.Problem("checkpoint origin %s/%s: %v", opts.Bucket, sink.OriginKey(opts.Slot), err)
			default:
				s.Checkpoint.Origin = string(o.Value())
			}
		}
	}
	stream, err := js.Stream(ctx, opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.Problem("stream %s does not exist: start tidemark replicate", opts.Stream)
		return
	}
	if err != nil {
		s.Problem("stream %s: %v", opts.Stream, err)
		return
	}
	info := stream.CachedInfo()
	s.Stream = &Stream{Name: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, LastTime: info.State.LastTime,
		Consumers: info.State.Consumers, Replicas: info.Config.Replicas}
	list := stream.ListConsumers(ctx)
	for c := range list.Info() {
		s.Consumers = append(s.Consumers, Consumer{Name: c.Name, Pending: c.NumPending, AckPending: c.NumAckPending,
			Redelivered: c.NumRedelivered, Waiting: c.NumWaiting, LastDelivery: lastActive(c.Delivered.Last)})
	}
	if err := list.Err(); err != nil {
		s.Problem("list consumers of %s: %v", opts.Stream, err)
	}
}

func lastActive(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// CheckLost says whether the slot is lost, as replicate decides it (replication.Lost):
// invalidated, dropped while the checkpoint says it existed, on another server than the
// checkpoint's, or behind a checkpoint of unknown origin. Call it once both GatherPostgres and
// GatherNATS have run.
func (s *Status) CheckLost(slot string) {
	if s.SlotLost != "" || (s.slotRead == nil && !s.slotMissing) {
		return
	}
	c := replication.SlotCheck{Origin: s.origin}
	if s.Checkpoint != nil {
		lsn, err := pglogrepl.ParseLSN(s.Checkpoint.LSN)
		if err != nil {
			s.Problem("checkpoint %s/%s holds %q: %v", s.Checkpoint.Bucket, s.Checkpoint.Key, s.Checkpoint.LSN, err)
			return
		}
		c.Saved, c.SavedOrigin = lsn, s.Checkpoint.Origin
	}
	var read replication.Slot
	if s.slotRead != nil {
		read = *s.slotRead
	}
	lost := replication.Lost(slot, read, s.slotMissing, c)
	switch {
	case lost != nil:
		s.SlotLost = lost.Reason
		s.Problem("slot %s is lost: %s (%s), the changes after %s are gone; run tidemark replicate --on-slot-lost resync",
			slot, lost.Reason, lost.Detail, lost.MissingFrom)
	case s.slotMissing:
		s.Problem("slot %s does not exist: start tidemark replicate", slot)
	case c.SavedOrigin != "" && s.originErr != nil:
		s.Problem("cannot tell whether slot %s is on the server its checkpoint was taken on (%s), so whether it is lost: %v",
			slot, c.SavedOrigin, s.originErr)
	}
}
