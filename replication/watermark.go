package replication

import (
	"encoding/json"
	"fmt"
	"strconv"
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
	// Supplier, After and Until name the chunk's keys: supplier_id = Supplier and
	// After < id <= Until. Only changes of those keys can make a chunk row stale, so the window
	// remembers only them. Until 0 (a low watermark of an older tidemark) means any key.
	Supplier int64 `json:"supplier,omitempty"`
	After    int64 `json:"after,omitempty"`
	Until    int64 `json:"until,omitempty"`
}

// MaxWindowKeys bounds the keys one open window remembers (a few MB). A chunk's range holds
// about a chunk's worth of products, so only a window whose range is unknown can reach it
// under heavy writes; such a window is given up: its chunk publishes nothing, and the
// replicator logs which supplier to snapshot again.
const MaxWindowKeys = 1 << 16

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

// supplier reads the supplier_id of the chunk's first row, 0 when it has none.
func (m *SnapshotChunk) supplier() int64 {
	for i, c := range m.Columns {
		if c.Name != "supplier_id" || len(m.Rows) == 0 || i >= len(m.Rows[0]) || m.Rows[0][i] == nil {
			continue
		}
		id, err := strconv.ParseInt(*m.Rows[0][i], 10, 64)
		if err == nil {
			return id
		}
	}
	return 0
}

type windowKey struct {
	id    string
	chunk int
}

type window struct {
	low       pglogrepl.LSN
	opened    time.Time
	keys      SnapshotLow // the chunk's key range
	changed   map[event.Key]struct{}
	truncated bool
	overflow  bool // more than MaxWindowKeys keys changed: changed is dropped
}

// covers says whether key is in the window's chunk range.
func (w *window) covers(key event.Key) bool {
	if w.keys.Until == 0 {
		return true
	}
	return key.SupplierID == w.keys.Supplier && key.ID > w.keys.After && key.ID <= w.keys.Until
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
	// expired lists chunks that arrived after their window expired, and overflowed those whose
	// windows remembered too many keys; the caller logs both.
	expired    []string
	overflowed []string
	// lost holds the epochs (snapshot ids) with a chunk that published nothing because its
	// window was gone or overflowed: their close is not published. It outlives the session
	// (see lostepochs.go); lostChanged says it changed since the caller last saved it, and
	// newLost counts the epochs added meanwhile. unclosed lists the closes dropped, for the
	// caller to log.
	lost        map[string]*LostEpoch
	lostChanged bool
	newLost     int
	unclosed    []string
	// stored is the commit LSN below which the stream already holds every change of the slot
	// (from the session's start): a chunk replayed from there without its window was published
	// with its window in an earlier session, so it does not spoil its epoch (had it been lost
	// then, lost would say so: the loss is saved before the stream moves past the chunk).
	stored pglogrepl.LSN
	// closing is the low watermark of the window the chunk of the transaction being received
	// closed: the slot stays before it until that transaction's commit, or a restart from
	// inside the transaction would replay the chunk without its window.
	closing pglogrepl.LSN
}

// committed ends the transaction being received.
func (w *watermarks) committed() { w.closing = 0 }

// spoiled reports whether epoch id lost a chunk, its close (in the transaction committing at
// commit) being dropped. Every replay of the close is dropped again.
func (w *watermarks) spoiled(id string, commit pglogrepl.LSN) bool {
	e, ok := w.lost[id]
	if !ok {
		return false
	}
	if e.Closed == 0 {
		e.Closed = event.LSN(commit)
		w.lostChanged = true
	}
	return true
}

// spoil records that epoch id lost a chunk of supplier's, in the transaction committing at
// commit.
func (w *watermarks) spoil(id string, supplier int64, commit pglogrepl.LSN) {
	if w.lost == nil {
		w.lost = map[string]*LostEpoch{}
	}
	if _, ok := w.lost[id]; ok {
		return
	}
	w.lost[id] = &LostEpoch{ID: id, Supplier: supplier, Lost: event.LSN(commit)}
	w.lostChanged = true
	w.newLost++
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
	w.open[windowKey{m.ID, m.Chunk}] = &window{low: lsn, opened: w.clock(), keys: m, changed: map[event.Key]struct{}{}}
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
		if win.overflow || !win.covers(key) {
			continue
		}
		if _, ok := win.changed[key]; !ok && len(win.changed) >= MaxWindowKeys {
			win.overflow, win.changed = true, nil
			continue
		}
		win.changed[key] = struct{}{}
	}
}

// truncatedPartition records the truncate of one supplier's partition. The open windows of
// that supplier's chunks publish none of their rows, which are gone; those of other suppliers
// are untouched, since dropping their rows would let the epoch's close delete products it did
// not carry. A window whose keys are unknown (an older tidemark's) cannot tell, so it is given
// up as an overflowed one is: its chunk publishes nothing and its epoch is not closed.
func (w *watermarks) truncatedPartition(supplier int64) {
	for _, win := range w.open {
		switch {
		case win.keys.Until == 0:
			win.overflow, win.changed = true, nil
		case win.keys.Supplier == supplier:
			win.truncated = true
		}
	}
}

// chunk closes the chunk's window and returns the rows to publish: those whose keys did not
// change since the low watermark. A chunk without an open window (its low watermark was before
// this session's start point, which holdLSN prevents, or a message written by hand) publishes
// nothing: without the window we cannot tell which rows are stale.
func (w *watermarks) chunk(content []byte, lsn, commit pglogrepl.LSN) (*SnapshotChunk, func(event.Key) bool, error) {
	var m SnapshotChunk
	if err := json.Unmarshal(content, &m); err != nil {
		return nil, nil, fmt.Errorf("decode snapshot chunk at %s: %w", lsn, err)
	}
	k := windowKey{m.ID, m.Chunk}
	win, ok := w.open[k]
	if !ok {
		if len(m.Rows) > 0 && commit >= w.stored {
			w.expired = append(w.expired, fmt.Sprintf("%s chunk %d", m.ID, m.Chunk))
			w.spoil(m.ID, m.supplier(), commit)
		}
		return &m, func(event.Key) bool { return false }, nil
	}
	delete(w.open, k)
	w.closing = win.low
	if win.overflow && len(m.Rows) > 0 {
		w.overflowed = append(w.overflowed, fmt.Sprintf("%s chunk %d (supplier %d)", m.ID, m.Chunk, win.keys.Supplier))
		w.spoil(m.ID, win.keys.Supplier, commit)
	}
	if win.truncated || win.overflow {
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
	min := w.closing
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
