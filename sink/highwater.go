package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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
//
// The last message is read on its own: it is nearly always the slot's. Behind foreign
// messages the tail is read forward in windows that grow 64-fold (64, 4096, 262144 messages
// before the last), each through a consumer of its own, so that thousands of foreign messages
// cost one stream of messages rather than a request each.
func ReadHighWater(ctx context.Context, st jetstream.Stream, slot string, maxScan int) (HighWater, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return HighWater{}, fmt.Errorf("stream info: %w", err)
	}
	hw := HighWater{LastSeq: info.State.LastSeq}
	if info.State.Msgs == 0 || maxScan <= 0 {
		return hw, nil
	}
	last, err := st.GetMsg(ctx, info.State.LastSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound): // deleted since Info
	case err != nil:
		return HighWater{}, fmt.Errorf("read stream message %d: %w", info.State.LastSeq, err)
	default:
		hw.Scanned++
		if pos, ok := ownPosition(last.Header, last.Data, slot); ok {
			hw.Position, hw.Found, hw.Seq = pos, true, last.Sequence
			return hw, nil
		}
	}
	for end, width := info.State.LastSeq-1, uint64(64); end >= info.State.FirstSeq && end > 0 && hw.Scanned < maxScan; width *= 64 {
		width = min(width, uint64(maxScan-hw.Scanned))
		from := info.State.FirstSeq
		if end-info.State.FirstSeq+1 > width {
			from = end - width + 1
		}
		if err := readWindow(ctx, st, slot, from, end, &hw); err != nil {
			return HighWater{}, err
		}
		if hw.Found {
			return hw, nil
		}
		end = from - 1
	}
	return hw, nil
}

// readWindow reads messages from..end forward and keeps in hw the last of them that slot
// published.
func readWindow(ctx context.Context, st jetstream.Stream, slot string, from, end uint64, hw *HighWater) error {
	// An ephemeral consumer of its own, deleted when done (and by the server after a while
	// should this process die first).
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("read stream from %d: %w", from, err)
	}
	defer func() { _ = st.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) }()
	for {
		batch, err := cons.FetchNoWait(int(min(end-from+1, 4096)))
		if err != nil {
			return fmt.Errorf("read stream from %d: %w", from, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read stream from %d: %w", from, err)
			}
			seq := meta.Sequence.Stream
			if seq > end {
				return nil
			}
			hw.Scanned++
			if pos, ok := ownPosition(m.Headers(), m.Data(), slot); ok {
				hw.Position, hw.Found, hw.Seq = pos, true, seq
			}
			if seq == end {
				return nil
			}
			from = seq + 1
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read stream from %d: %w", from, err)
		}
		if got == 0 {
			return nil // nothing left: the rest of the window was deleted
		}
	}
}

// ownPosition is the position of a message when slot published it.
func ownPosition(h nats.Header, data []byte, slot string) (event.Position, bool) {
	pos, ok := ParseMsgID(h.Get(jetstream.MsgIDHeader))
	if !ok {
		return event.Position{}, false
	}
	var ev struct {
		Source struct {
			Slot string `json:"slot"` // native
			Name string `json:"name"` // Debezium
		} `json:"source"`
	}
	if json.Unmarshal(data, &ev) != nil || (ev.Source.Slot != slot && ev.Source.Name != slot) {
		return event.Position{}, false
	}
	return pos, true
}
