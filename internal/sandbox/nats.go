package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded nats-server with JetStream and file storage. Shutdown and Start keep the
// port and the store directory, so a restart looks to clients like a real server restart.
type NATS struct {
	storeDir string
	ownDir   bool
	port     int // the port the server bound first; 0 before that unless NATSOptions.Port

	mu  sync.Mutex
	srv *server.Server
}

// NATSOptions tunes an embedded server.
type NATSOptions struct {
	// StoreDir is the JetStream store directory; default a new temp dir, removed by Close.
	StoreDir string
	// Port is the client port; default 0: the server binds a free one itself, and keeps it
	// across restarts.
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
	if err := n.Start(); err != nil {
		if n.ownDir {
			_ = os.RemoveAll(n.storeDir)
		}
		return nil, err
	}
	return n, nil
}

// Start starts the server (again). It is a no-op when the server is running. The first start
// lets the server pick its port (unless NATSOptions.Port set one); a restart binds that port
// again, waiting up to restartWait while another process holds it.
func (n *NATS) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	port := n.port
	if port == 0 {
		// Bound by the server itself: no window between choosing a free port and binding it
		// in which another process can take it.
		port = server.RANDOM_PORT
	}
	deadline := time.Now().Add(restartWait)
	for {
		srv, err := n.start(port)
		if err == nil {
			n.srv, n.port = srv, srv.Addr().(*net.TCPAddr).Port
			return nil
		}
		if !errors.Is(err, errPortInUse) || port == server.RANDOM_PORT {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart nats-server on its port %d: still taken by another process after %s, "+
				"and clients know only %s: %w", port, restartWait, n.url(port), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs one server on port; errPortInUse when it cannot bind it.
func (n *NATS) start(port int) (*server.Server, error) {
	srv, err := server.NewServer(&server.Options{
		ServerName: "tidemark-sandbox",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   n.storeDir,
		NoSigs:     true,
		NoLog:      true,
		// Large transactions publish fast; keep the default pending limits out of the way.
		MaxPending: 256 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("configure nats-server: %w", err)
	}
	// The server reports why it did not start (a taken port, a locked store) only to its
	// logger.
	log := &errorLog{}
	srv.SetLoggerV2(log, false, false, false)
	// Start returns once the client listener is up, or has failed.
	srv.Start()
	if srv.Addr() == nil {
		srv.Shutdown()
		msg := log.String()
		if strings.Contains(msg, "address already in use") {
			return nil, fmt.Errorf("nats-server on 127.0.0.1:%d: %w: %s", port, errPortInUse, msg)
		}
		return nil, fmt.Errorf("nats-server did not start: %s", msg)
	}
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats-server not ready within 30s: %s", log.String())
	}
	return srv, nil
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
func (n *NATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.url(n.port)
}

func (n *NATS) url(port int) string { return fmt.Sprintf("nats://127.0.0.1:%d", port) }

// Port is the client port the server bound (the same across restarts).
func (n *NATS) Port() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.port
}

// StoreDir is the JetStream store directory.
func (n *NATS) StoreDir() string { return n.storeDir }

// errorLog keeps the errors a nats-server logs and drops the rest.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) add(format string, v []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, fmt.Sprintf(format, v...))
}

func (l *errorLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) == 0 {
		return "no error logged"
	}
	return strings.Join(l.msgs, "; ")
}

func (l *errorLog) Fatalf(format string, v ...any) { l.add(format, v) }
func (l *errorLog) Errorf(format string, v ...any) { l.add(format, v) }
func (l *errorLog) Noticef(string, ...any)         {}
func (l *errorLog) Warnf(string, ...any)           {}
func (l *errorLog) Debugf(string, ...any)          {}
func (l *errorLog) Tracef(string, ...any)          {}
