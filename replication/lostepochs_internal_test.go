package replication

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/event"
)

// lostStore is a LostEpochs (and Checkpoints) in memory.
type lostStore struct{ saved []LostEpoch }

func (s *lostStore) Load(context.Context, string) (pglogrepl.LSN, error) { return 0, nil }
func (s *lostStore) Save(context.Context, string, pglogrepl.LSN) error   { return nil }
func (s *lostStore) LoadLostEpochs(context.Context, string) ([]LostEpoch, error) {
	return s.saved, nil
}
func (s *lostStore) SaveLostEpochs(_ context.Context, _ string, epochs []LostEpoch) error {
	s.saved = epochs
	return nil
}

// TestLostEpochsBeyondTheBoundForgetClosedOnesFirst: an epoch whose close has not come yet
// (a snapshot killed after its lost chunk, to be resumed some day) is the one whose close a
// replicator would publish once the entry is forgotten; one whose close was dropped only
// matters to a replay of that close. Beyond MaxLostEpochs, the closed ones go first, even when
// the open one lost its chunk before them.
func TestLostEpochsBeyondTheBoundForgetClosedOnesFirst(t *testing.T) {
	store := &lostStore{}
	r := &Replicator{cfg: Config{Slot: "tidemark", Checkpoints: store}, log: slog.New(slog.DiscardHandler), lost: map[string]*LostEpoch{}}
	r.lost["abandoned"] = &LostEpoch{ID: "abandoned", Supplier: 7, Lost: 0x100}
	for i := range MaxLostEpochs {
		id := fmt.Sprintf("closed-%04d", i)
		lsn := event.LSN(0x1000 + 0x100*i)
		r.lost[id] = &LostEpoch{ID: id, Supplier: int64(i + 1), Lost: lsn, Closed: lsn + 0x10}
	}
	if err := r.saveLostEpochs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(store.saved) != MaxLostEpochs || len(r.lost) != MaxLostEpochs {
		t.Fatalf("%d saved, %d kept, want %d", len(store.saved), len(r.lost), MaxLostEpochs)
	}
	if _, ok := r.lost["abandoned"]; !ok {
		t.Error("the epoch whose close has not come was forgotten before one whose close was dropped")
	}
	if _, ok := r.lost["closed-0000"]; ok {
		t.Error("the oldest closed epoch was kept beyond the bound")
	}
	for _, e := range store.saved {
		if e.ID == "closed-0000" {
			t.Error("the oldest closed epoch was saved beyond the bound")
		}
	}
}
