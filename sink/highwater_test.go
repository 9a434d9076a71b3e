package sink_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/sink"
)

// TestReadHighWaterBehindForeignMessages: the slot's last change sits behind 5,000 foreign
// messages, with deleted messages at the ends of the windows read; it is found, every message
// behind it is counted once, a smaller budget gives up without finding it, and no consumer is
// left on the stream.
func TestReadHighWaterBehindForeignMessages(t *testing.T) {
	e := startNATS(t)
	ctx, js := e.ctx, e.js
	st := e.stream(t, sink.StreamConfig{})
	for i := 0; i < 10; i++ {
		c := change(0x7000, i, 1)
		if _, err := js.Publish(ctx, sink.Subject(c), c.AppendJSON(nil), jetstream.WithMsgID(sink.MsgID(c))); err != nil {
			t.Fatal(err)
		}
	}
	const foreign = 5000
	for i := 0; i < foreign; i++ {
		if _, err := js.Publish(ctx, "products.1.insert", []byte(`{"op":"insert"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.LastSeq != 10+foreign {
		t.Fatalf("stream state %+v (%v)", info.State, err)
	}
	// Seqs 1-10 are the slot's, 11-5010 foreign. Delete the last message, the end of the second
	// window (5010-1-64 = 4945) and one foreign message in the last window.
	for _, seq := range []uint64{5010, 4945, 100} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatalf("delete %d: %v", seq, err)
		}
	}

	start := time.Now()
	hw, err := sink.ReadHighWater(ctx, st, "tidemark", 100_000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("found after %d messages in %v", hw.Scanned, time.Since(start))
	if want := (event.Position{CommitLSN: 0x7000, Seq: 9}); !hw.Found || hw.Position != want || hw.Seq != 10 {
		t.Errorf("found %v %s at %d, want %s at 10", hw.Found, hw.Position, hw.Seq, want)
	}
	if hw.LastSeq != 5010 {
		t.Errorf("LastSeq %d, want 5010", hw.LastSeq)
	}
	if want := 5010 - 3; hw.Scanned != want {
		t.Errorf("scanned %d messages, want %d: each message still in the stream once", hw.Scanned, want)
	}

	hw, err = sink.ReadHighWater(ctx, st, "tidemark", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if hw.Found || hw.Scanned != 1000 {
		t.Errorf("with a budget of 1000: found %v after %d messages, want not found after 1000", hw.Found, hw.Scanned)
	}

	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the stream", info.State.Consumers)
	}
}
