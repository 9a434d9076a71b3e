package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
)

// HighWater is how far a stream holds a slot's changes.
type HighWater struct {
	// Position is that of the slot's last change in the stream; zero when none was found.
	Position event.Position
	// Found says whether a message of the slot was found.
	Found bool
	// Seq is the stream sequence of that message.
	Seq uint64
	// LastSeq is the stream's last sequence (its message may belong to someone else).
	LastSeq uint64
	// Scanned counts the messages read back from the end of the stream.
	Scanned int
}

// ReadHighWater reads st back from its last message to the last one slot published, reading at
// most maxScan messages. A message is the slot's when its Nats-Msg-Id is a position and its
// event names the slot (source.slot, or source.name in the Debezium envelope): a message some
// other client published into the stream is passed over.
func ReadHighWater(ctx context.Context, st jetstream.Stream, slot string, maxScan int) (HighWater, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return HighWater{}, fmt.Errorf("stream info: %w", err)
	}
	hw := HighWater{LastSeq: info.State.LastSeq}
	if info.State.Msgs == 0 {
		return hw, nil
	}
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && hw.Scanned < maxScan; seq-- {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			return HighWater{}, fmt.Errorf("read stream message %d: %w", seq, err)
		}
		hw.Scanned++
		if pos, ok := ownPosition(m, slot); ok {
			hw.Position, hw.Found, hw.Seq = pos, true, seq
			return hw, nil
		}
	}
	return hw, nil
}

// ownPosition is the position of m when slot published it.
func ownPosition(m *jetstream.RawStreamMsg, slot string) (event.Position, bool) {
	pos, ok := ParseMsgID(m.Header.Get(jetstream.MsgIDHeader))
	if !ok {
		return event.Position{}, false
	}
	var ev struct {
		Source struct {
			Slot string `json:"slot"` // native
			Name string `json:"name"` // Debezium
		} `json:"source"`
	}
	if json.Unmarshal(m.Data, &ev) != nil || (ev.Source.Slot != slot && ev.Source.Name != slot) {
		return event.Position{}, false
	}
	return pos, true
}
