package replication

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/event"
)

// Incremental snapshots follow Netflix's DBLog: the snapshot process writes a low watermark to
// the WAL, reads a chunk of rows, and writes the chunk itself as a transactional logical
// message (the high watermark). The replicator remembers which keys changed between the two and
// publishes only the chunk rows whose keys did not: for those, the chunk holds the latest state;
// for the others the change events already in the stream are newer. So a snapshot row never
// lands after a newer change of its product, and no table lock or paused pipeline is needed.
const (
	// SnapshotLowPrefix marks a low watermark; content is a [SnapshotLow].
	SnapshotLowPrefix = "tidemark.snapshot.low"
	// SnapshotChunkPrefix marks a chunk (the high watermark); content is a [SnapshotChunk].
	SnapshotChunkPrefix = "tidemark.snapshot.chunk"
)

// SnapshotLow is the content of a low watermark message.
type SnapshotLow struct {
	ID    string `json:"id"`    // the snapshot
	Chunk int    `json:"chunk"` // the chunk's number within the snapshot
}

// SnapshotColumn names a chunk column and its type OID, so the replicator renders values
// exactly as it renders pgoutput's.
type SnapshotColumn struct {
	Name string `json:"name"`
	Type uint32 `json:"type"`
}

// SnapshotChunk is the content of a chunk message: rows in PostgreSQL's text format.
type SnapshotChunk struct {
	ID      string           `json:"id"`
	Chunk   int              `json:"chunk"`
	Schema  string           `json:"schema"`
	Table   string           `json:"table"`
	Columns []SnapshotColumn `json:"columns"`
	Rows    [][]*string      `json:"rows"` // nil is SQL NULL
}

type windowKey struct {
	id    string
	chunk int
}

type window struct {
	low       pglogrepl.LSN
	opened    time.Time
	changed   map[event.Key]struct{}
	truncated bool
}

// WindowExpiry is how long the replicator keeps a snapshot window open waiting for its chunk.
// A snapshot process that died between its watermarks never sends the chunk; without a bound
// the slot would hold WAL for ever. A chunk arriving after its window expired publishes
// nothing (its rows could be stale) and is logged: run the snapshot again.
const WindowExpiry = 10 * time.Minute

// watermarks tracks the open snapshot windows of one replication session. It is owned by the
// receive loop's goroutine.
type watermarks struct {
	open map[windowKey]*window
	now  func() time.Time // for tests; default time.Now
	// expired counts chunks that arrived after their window expired (logged by the caller).
	expired []string
}

func (w *watermarks) clock() time.Time {
	if w.now != nil {
		return w.now()
	}
	return time.Now()
}

// low opens a window at the low watermark's LSN.
func (w *watermarks) low(content []byte, lsn pglogrepl.LSN) error {
	var m SnapshotLow
	if err := json.Unmarshal(content, &m); err != nil {
		return fmt.Errorf("decode snapshot low watermark at %s: %w", lsn, err)
	}
	if w.open == nil {
		w.open = map[windowKey]*window{}
	}
	w.open[windowKey{m.ID, m.Chunk}] = &window{low: lsn, opened: w.clock(), changed: map[event.Key]struct{}{}}
	return nil
}

// observe records a published change of key in every open window (a truncate spoils them
// all). Cheap when none is open.
func (w *watermarks) observe(op event.Op, key event.Key) {
	if len(w.open) == 0 {
		return
	}
	for _, win := range w.open {
		if op == event.OpTruncate {
			win.truncated = true
			continue
		}
		win.changed[key] = struct{}{}
	}
}

// chunk closes the chunk's window and returns the rows to publish: those whose keys did not
// change since the low watermark. A chunk without an open window (its low watermark was before
// this session's start point, which holdLSN prevents, or a message written by hand) publishes
// nothing: without the window we cannot tell which rows are stale.
func (w *watermarks) chunk(content []byte, lsn pglogrepl.LSN) (*SnapshotChunk, func(event.Key) bool, error) {
	var m SnapshotChunk
	if err := json.Unmarshal(content, &m); err != nil {
		return nil, nil, fmt.Errorf("decode snapshot chunk at %s: %w", lsn, err)
	}
	k := windowKey{m.ID, m.Chunk}
	win, ok := w.open[k]
	if !ok {
		if len(m.Rows) > 0 {
			w.expired = append(w.expired, fmt.Sprintf("%s chunk %d", m.ID, m.Chunk))
		}
		return &m, func(event.Key) bool { return false }, nil
	}
	delete(w.open, k)
	if win.truncated {
		return &m, func(event.Key) bool { return false }, nil
	}
	return &m, func(key event.Key) bool {
		_, changed := win.changed[key]
		return !changed
	}, nil
}

// holdLSN is the LSN the flushed position must not pass while a window is open: a restart must
// replay from before the low watermark, or it would see the chunk without its window.
func (w *watermarks) holdLSN() (pglogrepl.LSN, bool) {
	var min pglogrepl.LSN
	now := w.clock()
	for k, win := range w.open {
		if now.Sub(win.opened) > WindowExpiry {
			delete(w.open, k)
			continue
		}
		if min == 0 || win.low < min {
			min = win.low
		}
	}
	return min, min != 0
}
