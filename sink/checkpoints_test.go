package sink_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// TestLostEpochsRefuseAStaleSave: two replicators of one slot (the one that lost the slot
// while it still decodes what it had received, and the one that took it over) each hold
// their own Checkpoints. A save from the one whose read is older than the other's write must
// fail, not replace the list: the other's loss would be forgotten, and a later replicator
// would publish that epoch's close. A key deleted by hand can be saved again.
func TestLostEpochsRefuseAStaleSave(t *testing.T) {
	e := startNATS(t)
	ctx, n, js := e.ctx, e.n, e.js
	if _, err := sink.EnsureCheckpoints(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	open := func() *sink.Checkpoints {
		cps, err := sink.OpenCheckpoints(ctx, setup(t, connect(t, n.URL())))
		if err != nil {
			t.Fatal(err)
		}
		return cps
	}
	stale, holder := open(), open()
	first := []replication.LostEpoch{{ID: "s1-1.2", Supplier: 1, Lost: 0x1000}}
	if err := stale.SaveLostEpochs(ctx, "tidemark", first); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.LoadLostEpochs(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	loaded, err := holder.LoadLostEpochs(ctx, "tidemark")
	if err != nil || !slices.Equal(loaded, first) {
		t.Fatalf("holder loaded %+v %v, want %+v", loaded, err, first)
	}
	both := append(slices.Clone(first), replication.LostEpoch{ID: "s2-3.4", Supplier: 2, Lost: 0x2000})
	if err := holder.SaveLostEpochs(ctx, "tidemark", both); err != nil {
		t.Fatal(err)
	}
	if err := holder.SaveLostEpochs(ctx, "tidemark", both); err != nil {
		t.Fatalf("a second save after one's own: %v", err)
	}
	// The stale one learnt of s1-1.2 only, and saves its own view.
	if err := stale.SaveLostEpochs(ctx, "tidemark", first); err == nil {
		t.Error("a save over lost epochs written by another replicator since the last read succeeded")
	}
	if got, err := holder.LoadLostEpochs(ctx, "tidemark"); err != nil || !slices.Equal(got, both) {
		t.Fatalf("saved lost epochs %+v %v, want %+v: the stale save replaced them", got, err, both)
	}
	// Read again, the stale one may save.
	if _, err := stale.LoadLostEpochs(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	if err := stale.SaveLostEpochs(ctx, "tidemark", both); err != nil {
		t.Fatalf("save after a fresh read: %v", err)
	}

	kv, err := js.KeyValue(ctx, sink.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "tidemark.lost_epochs"); err != nil {
		t.Fatal(err)
	}
	if got, err := holder.LoadLostEpochs(ctx, "tidemark"); err != nil || len(got) != 0 {
		t.Fatalf("after the key was deleted: %+v %v", got, err)
	}
	if err := holder.SaveLostEpochs(ctx, "tidemark", first); err != nil {
		t.Fatalf("save over a deleted key: %v", err)
	}
	if e, err := kv.Get(ctx, "tidemark.lost_epochs"); err != nil || e.Operation() != jetstream.KeyValuePut {
		t.Fatalf("after the save over the deleted key: %v", err)
	}
}

// TestLostEpochsCorruptKey: a lost_epochs key that is no list of epochs is an error that names
// the key and is replication.ErrCheckpointCorrupt (the replicator stops on it: a reconnect
// would read it again), not an empty list and not a panic.
func TestLostEpochsCorruptKey(t *testing.T) {
	e := startNATS(t)
	ctx, js := e.ctx, e.js
	cps, err := sink.EnsureCheckpoints(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, sink.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, value := range []string{`{"id":"s1-1.2"}`, `[{"id":"s1-1.2","lost":"nonsense"}]`, "\x00\x01", `[`} {
		if _, err := kv.PutString(ctx, "tidemark.lost_epochs", value); err != nil {
			t.Fatal(err)
		}
		got, err := cps.LoadLostEpochs(ctx, "tidemark")
		if !errors.Is(err, replication.ErrCheckpointCorrupt) || !strings.Contains(err.Error(), "tidemark.lost_epochs") {
			t.Errorf("load of %q: %+v, %v; want replication.ErrCheckpointCorrupt naming the key", value, got, err)
		}
	}
}
