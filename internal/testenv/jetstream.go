package testenv

import (
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
