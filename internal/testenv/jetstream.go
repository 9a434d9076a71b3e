package testenv

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream connects to the NATS server at url, closed when the test ends.
func JetStream(tb testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

// NATSServer starts a bare nats-server with opts on a free port of 127.0.0.1, without logs
// or signal handlers (and without JetStream unless opts enable it), stopped when the test ends.
func NATSServer(tb testing.TB, opts server.Options) *server.Server {
	tb.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	srv, err := server.NewServer(&opts)
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Start()
	tb.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	return srv
}

// StreamMessages yields every message st holds when it is called, in stream order, through an
// ordered consumer a batch at a time (a request per message outlasted a loaded CI machine's
// minute at 24,000 messages).
func StreamMessages(tb testing.TB, ctx context.Context, st jetstream.Stream) iter.Seq[jetstream.Msg] {
	return func(yield func(jetstream.Msg) bool) {
		info, err := st.Info(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		n := info.State.Msgs
		if n == 0 {
			return
		}
		cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			tb.Fatal(err)
		}
		for read := uint64(0); read < n; {
			batch, err := cons.Fetch(10_000, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				tb.Fatal(err)
			}
			got := 0
			for m := range batch.Messages() {
				got++
				if !yield(m) {
					return
				}
			}
			if batch.Error() != nil {
				tb.Fatal(batch.Error())
			}
			if got == 0 {
				tb.Fatalf("read %d of %d messages, then nothing", read, n)
			}
			read += uint64(got)
		}
	}
}
