package replication_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
)

// checkpointStore keeps checkpoints and lost epochs in memory, as sink.Checkpoints keeps them
// in NATS; failLost makes every save of the lost epochs fail while it is set.
type checkpointStore struct {
	mu       sync.Mutex
	lsn      pglogrepl.LSN
	lost     []replication.LostEpoch
	failLost atomic.Bool
	failed   atomic.Int32
}

var _ replication.LostEpochs = (*checkpointStore)(nil)

func (s *checkpointStore) Load(context.Context, string) (pglogrepl.LSN, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lsn, nil
}

func (s *checkpointStore) Save(_ context.Context, _ string, lsn pglogrepl.LSN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lsn = lsn
	return nil
}

func (s *checkpointStore) LoadLostEpochs(context.Context, string) ([]replication.LostEpoch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lost), nil
}

func (s *checkpointStore) SaveLostEpochs(_ context.Context, _ string, epochs []replication.LostEpoch) error {
	if s.failLost.Load() {
		s.failed.Add(1)
		return errors.New("injected failure to save the lost epochs")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = slices.Clone(epochs)
	return nil
}

func (s *checkpointStore) lostEpochs() []replication.LostEpoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lost)
}

// has says whether rec holds an insert of sku.
func (r *recorder) has(sku string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if v, ok := c.After.Get("sku"); ok && string(v) == `"`+sku+`"` {
			return true
		}
	}
	return false
}

// TestLostChunkKeepsItsEpochOpenAcrossRestarts: a snapshot chunk that arrives without its
// window (as after the window expired) spoils its epoch, and the spoil is saved beside the
// checkpoint before anything after the chunk is published or confirmed. While the save fails,
// the replicator publishes nothing after the chunk and does not confirm past it; a replicator
// started afresh then replays the chunk and saves the loss. It is confirmed past the chunk and
// stopped; a standby replicator, started before the loss was saved, takes the slot over and
// gets the epoch's close: it does not publish it, and records that it came.
func TestLostChunkKeepsItsEpochOpenAcrossRestarts(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, price)
		SELECT 1, 'OAK-' || g, 'Nordby oak table ' || g, 199 FROM generate_series(1, 20) g`)
	store := &checkpointStore{}
	rec := &recorder{stream: true}
	withStore := func(c *replication.Config) { c.Checkpoints = store }
	reg := prometheus.NewRegistry()
	r, stop := e.runWith(t, reg, rec, withStore)
	testenv.WaitFor(t, "the products", 30*time.Second, func() bool { return rec.count() >= 20 })

	const epoch = "s1-lost.1"
	open := testenv.EmitMessage(t, e.pool, replication.EpochOpenPrefix, replication.EpochMessage{ID: epoch, Supplier: 1, Schema: "public", Table: "products"})
	one, supplier := "1", "1"
	store.failLost.Store(true)
	chunk := testenv.EmitMessage(t, e.pool, replication.SnapshotChunkPrefix, replication.SnapshotChunk{ID: epoch, Chunk: 1, Schema: "public", Table: "products",
		Columns: []replication.SnapshotColumn{{Name: "id", Type: 20}, {Name: "supplier_id", Type: 23}}, Rows: [][]*string{{&one, &supplier}}})
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (2, 'MARK-1', 'Marker crate')`)
	testenv.WaitFor(t, "a failed save of the lost epoch", 30*time.Second, func() bool { return store.failed.Load() >= 1 })
	time.Sleep(time.Second) // ten status intervals: time to publish and confirm the marker, wrongly
	if rec.has("MARK-1") {
		t.Fatal("a change after the lost chunk was published before the loss was saved")
	}
	if n := store.failed.Load(); n < 2 {
		t.Fatalf("%d failed saves: the replicator did not retry saving before streaming on", n)
	}
	if n := testenv.Counter(t, reg, "tidemark_replication_epochs_lost_total"); n != 1 {
		t.Errorf("tidemark_replication_epochs_lost_total %v, want 1", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if f := r.Flushed(); f > chunk {
		t.Fatalf("confirmed %s, past the lost chunk at %s, before the loss was saved", f, chunk)
	}

	// Fresh processes (nothing in memory), two of them: one takes the slot, replays the chunk
	// and saves its loss; the other stands by, having started before the loss was saved.
	store.failLost.Store(false)
	ra, stopA := e.run(t, rec, withStore)
	rb, stopB := e.run(t, rec, withStore)
	testenv.WaitFor(t, "the marker", 30*time.Second, func() bool { return rec.has("MARK-1") })
	marked := flushedInsertLSN(t, e.pool)
	testenv.WaitFor(t, "the slot past the marker", 30*time.Second, func() bool { return max(ra.Flushed(), rb.Flushed()) >= marked })
	lost := store.lostEpochs()
	if len(lost) != 1 || lost[0].ID != epoch || lost[0].Supplier != 1 || lost[0].Lost < event.LSN(chunk) || lost[0].Closed != 0 {
		t.Fatalf("saved lost epochs %+v, want %s of supplier 1, lost at or after %s, not closed", lost, epoch, chunk)
	}
	active, stopActive, standby, stopStandby := ra, stopA, rb, stopB
	if ra.Ready() != nil {
		active, stopActive, standby, stopStandby = rb, stopB, ra, stopA
	}
	if active.Ready() != nil || standby.Ready() == nil {
		t.Fatalf("want one replicator streaming and one standing by: ready %v and %v", active.Ready(), standby.Ready())
	}
	if err := stopActive(); err != nil {
		t.Fatal(err)
	}

	// The close comes while the standby takes the slot over.
	testenv.EmitMessage(t, e.pool, replication.EpochClosePrefix, replication.EpochMessage{ID: epoch, Supplier: 1, Schema: "public", Table: "products", OpenLSN: open.String(), Rows: 1})
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (2, 'MARK-2', 'Marker crate')`)
	testenv.WaitFor(t, "the second marker", 30*time.Second, func() bool { return rec.has("MARK-2") })
	if err := stopStandby(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	opens := 0
	for _, c := range rec.changes {
		switch c.Op {
		case event.OpEpochClose:
			t.Errorf("the close of epoch %s, which lost a chunk, was published after the takeover: %+v", c.Epoch.ID, c.Epoch)
		case event.OpEpochOpen:
			opens++
		case event.OpSnapshot:
			t.Errorf("a row of the lost chunk was published: %+v", c.Key)
		}
	}
	rec.mu.Unlock()
	if opens != 1 {
		t.Errorf("%d epoch_open events, want 1", opens)
	}
	if lost := store.lostEpochs(); len(lost) != 1 || lost[0].Closed == 0 {
		t.Errorf("saved lost epochs %+v, want the epoch with its close recorded", lost)
	}
}

// corruptLost is a checkpoint store whose saved lost epochs cannot be read.
type corruptLost struct{ checkpointStore }

func (s *corruptLost) LoadLostEpochs(context.Context, string) ([]replication.LostEpoch, error) {
	return nil, fmt.Errorf("lost snapshot epochs of tidemark: %w: invalid character", replication.ErrCheckpointCorrupt)
}

// TestCorruptLostEpochsStopTheReplicator: saved lost epochs that cannot be read stop Run with
// the error, as an unreadable checkpoint does, instead of reconnecting for ever (a reconnect
// reads them again) while it looks like an interruption.
func TestCorruptLostEpochsStopTheReplicator(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	r, err := replication.New(replication.Config{
		ConnString: e.url, Slot: e.slot, Publication: "tidemark", Checkpoints: &corruptLost{},
		StatusInterval: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}, &recorder{stream: true}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case err := <-errc:
		if !errors.Is(err, replication.ErrCheckpointCorrupt) {
			t.Fatalf("Run returned %v, want replication.ErrCheckpointCorrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still retrying 10s after the lost epochs could not be read")
	}
}
