package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded nats-server with JetStream and file storage. Shutdown and Start keep the
// port and the store directory, so a restart looks to clients like a real server restart.
type NATS struct {
	storeDir string
	ownDir   bool
	port     int

	mu  sync.Mutex
	srv *server.Server
}

// NATSOptions tunes an embedded server.
type NATSOptions struct {
	// StoreDir is the JetStream store directory; default a new temp dir, removed by Close.
	StoreDir string
	// Port is the client port; default a free one.
	Port int
}

// StartNATS starts an embedded nats-server with JetStream on 127.0.0.1.
func StartNATS(opts NATSOptions) (*NATS, error) {
	n := &NATS{storeDir: opts.StoreDir, port: opts.Port}
	if n.storeDir == "" {
		dir, err := os.MkdirTemp("", "tidemark-nats-")
		if err != nil {
			return nil, fmt.Errorf("create store dir: %w", err)
		}
		n.storeDir, n.ownDir = dir, true
	}
	if n.port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		n.port = p
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	return n, nil
}

// Start starts the server (again). It is a no-op when the server is running.
func (n *NATS) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "tidemark-sandbox",
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.storeDir,
		NoSigs:     true,
		NoLog:      true,
		// Large transactions publish fast; keep the default pending limits out of the way.
		MaxPending: 256 << 20,
	})
	if err != nil {
		return fmt.Errorf("configure nats-server: %w", err)
	}
	go srv.Start()
	// The port may still be held briefly by the previous instance after a restart.
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("nats-server not ready within 30s")
	}
	n.srv = srv
	return nil
}

// Shutdown stops the server; clients see the connection drop.
func (n *NATS) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
	// Wait until the port is free again so Start can bind it.
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			l.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart is Shutdown followed by Start.
func (n *NATS) Restart() error {
	n.Shutdown()
	return n.Start()
}

// Close shuts the server down and removes its store when StartNATS created it.
func (n *NATS) Close() error {
	n.Shutdown()
	if n.ownDir {
		return os.RemoveAll(n.storeDir)
	}
	return nil
}

// URL is the client URL (stable across restarts).
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// StoreDir is the JetStream store directory.
func (n *NATS) StoreDir() string { return n.storeDir }
