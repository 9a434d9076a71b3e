package replication

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidemark/tidemark/event"
)

// An epoch that lost a chunk must never close in the stream: its close would make subscribers
// drop the products that chunk carried. The replicator learns of the loss when the chunk
// arrives (its window expired or overflowed) and the close may come much later, in another
// session or another process; and a replay cannot find the loss again once the slot or the
// stream is past the chunk (a chunk replayed from below the stream's high-water mark was, as
// far as the replay can tell, published with its window). So the loss is kept beside the
// checkpoint and saved before decoding goes on past the chunk: until it is saved, nothing after
// the chunk is published and the slot stays before the chunk's commit, so a crash replays the
// chunk and finds the loss again.

// LostEpoch is a snapshot epoch that lost a chunk, so that its close is not published.
type LostEpoch struct {
	ID string `json:"id"`
	// Supplier is the supplier the lost chunk's rows belong to, 0 when it could not tell.
	Supplier int64 `json:"supplier,omitempty"`
	// Lost is the commit LSN of the transaction of the first chunk it lost.
	Lost event.LSN `json:"lost"`
	// Closed is the commit LSN of its close, which was not published; 0 until the close came.
	Closed event.LSN `json:"closed,omitempty"`
}

// LostEpochs keeps, beside a slot's checkpoint, the snapshot epochs that lost a chunk. When a
// Config's Checkpoints implements it, no session and no later process publishes the close of
// such an epoch; otherwise only the process that saw the loss knows of it.
type LostEpochs interface {
	// LoadLostEpochs returns the lost epochs saved for slot, none when nothing is saved.
	LoadLostEpochs(ctx context.Context, slot string) ([]LostEpoch, error)
	// SaveLostEpochs replaces the lost epochs saved for slot. A store shared by several
	// processes refuses (an error) a save over lost epochs written by another since it last
	// read or wrote them: a replicator that lost the slot without knowing yet would otherwise
	// replace the new holder's losses with its own view. The session fails, and the next one
	// reads them again and merges.
	SaveLostEpochs(ctx context.Context, slot string, epochs []LostEpoch) error
}

// MaxLostEpochs bounds the lost epochs kept per slot: beyond it those whose close was dropped
// are forgotten first (the oldest close first), then the oldest others. An epoch is forgotten
// anyway at a session's start once the stream holds a change after its close (a replay of the
// close is then skipped as already stored); only epochs whose close never comes (a snapshot
// abandoned for a new epoch) stay until this bound.
const MaxLostEpochs = 1000

// lostSaveTimeout bounds one save of the lost epochs; a failed save fails the session, which
// replays the chunk.
const lostSaveTimeout = 5 * time.Second

// noteLostEpochs counts the epochs the decoder found lost and saves what changed, before
// anything after the lost chunk is published or confirmed; a failure replays the chunk.
func (r *Replicator) noteLostEpochs(ctx context.Context, w *watermarks) error {
	r.epochsLost.Add(float64(w.newLost))
	w.lostChanged, w.newLost = false, 0
	return r.saveLostEpochs(ctx)
}

// syncLostEpochs runs at a session's start, once the session holds the slot (so no other
// replicator of the slot writes the lost epochs meanwhile, but one that lost the slot and
// still decodes what it had received, whose save the store refuses). It adds the lost epochs saved by an
// earlier process, or by another replicator that held the slot in between (a standby), to
// those this process knows; forgets those a replay can no longer publish the close of, the
// stream holding changes up to stored; and saves the result when it differs from what is
// saved. The session must not decode before the losses it knows of are saved: the decoder
// reports each loss once per process.
func (r *Replicator) syncLostEpochs(ctx context.Context, stored event.LSN) error {
	if r.lost == nil {
		r.lost = map[string]*LostEpoch{}
	}
	if store, ok := r.cfg.Checkpoints.(LostEpochs); ok {
		saved, err := store.LoadLostEpochs(ctx, r.cfg.Slot)
		if err != nil {
			return fmt.Errorf("load lost snapshot epochs: %w", err)
		}
		var learnt []LostEpoch
		for _, e := range saved {
			known, ok := r.lost[e.ID]
			switch {
			case !ok:
				r.lost[e.ID] = &e
				learnt = append(learnt, e)
			case known.Closed == 0 && e.Closed != 0:
				known.Closed = e.Closed
			}
		}
		if len(r.lost) != len(saved) {
			r.unsaved = true
		}
		if len(learnt) > 0 {
			r.log.Warn("snapshot epochs lost chunks earlier and are never closed in the stream; run tidemark snapshot --new-epoch for their suppliers if not done yet",
				"epochs", lostEpochList(learnt))
		}
	}
	for id, e := range r.lost {
		if e.Closed != 0 && e.Closed < stored {
			delete(r.lost, id)
			r.unsaved = true
		}
	}
	if !r.unsaved {
		return nil
	}
	return r.saveLostEpochs(ctx)
}

// saveLostEpochs writes the lost epochs to the checkpoint store, the oldest beyond
// MaxLostEpochs left out.
func (r *Replicator) saveLostEpochs(ctx context.Context) error {
	store, ok := r.cfg.Checkpoints.(LostEpochs)
	if !ok {
		r.unsaved = false // nowhere to save: this process's memory is all there is
		return nil
	}
	r.unsaved = true
	list := make([]LostEpoch, 0, len(r.lost))
	for _, e := range r.lost {
		list = append(list, *e)
	}
	if over := len(list) - MaxLostEpochs; over > 0 {
		// The closed first, the oldest close first: a dropped close matters only to a replay
		// of it, while the close of an open one may still come (a killed snapshot resumed)
		// and would be published once its entry is gone.
		open := func(e LostEpoch) int {
			if e.Closed == 0 {
				return 1
			}
			return 0
		}
		slices.SortFunc(list, func(a, b LostEpoch) int {
			return cmp.Or(cmp.Compare(open(a), open(b)), cmp.Compare(a.Closed, b.Closed),
				cmp.Compare(a.Lost, b.Lost), cmp.Compare(a.ID, b.ID))
		})
		for _, e := range list[:over] {
			delete(r.lost, e.ID)
		}
		list = list[over:]
	}
	slices.SortFunc(list, func(a, b LostEpoch) int { return cmp.Or(cmp.Compare(a.Lost, b.Lost), cmp.Compare(a.ID, b.ID)) })
	// Not ctx itself: a stop requested meanwhile still lets the loss be saved.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lostSaveTimeout)
	defer cancel()
	if err := store.SaveLostEpochs(sctx, r.cfg.Slot, list); err != nil {
		return fmt.Errorf("save lost snapshot epochs: %w", err)
	}
	r.unsaved = false
	return nil
}

func lostEpochList(epochs []LostEpoch) []string {
	out := make([]string, len(epochs))
	for i, e := range epochs {
		out[i] = fmt.Sprintf("%s (supplier %d)", e.ID, e.Supplier)
	}
	return out
}
