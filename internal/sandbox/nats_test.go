package sandbox

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestNATSPortTakenDuringRestart: the server binds a port of its own choosing, and a restart
// binds that port again: it waits while another process holds the port, and says so clearly
// when the port stays taken.
func TestNATSPortTakenDuringRestart(t *testing.T) {
	n, err := StartNATS(NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	url, port := n.URL(), n.Port()
	if port <= 0 || url != n.srv.ClientURL() {
		t.Fatalf("port %d, URL %s; the server says %s", port, url, n.srv.ClientURL())
	}
	hold := func() net.Listener {
		t.Helper()
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("take the port: %v", err)
		}
		return l
	}

	// Taken for a while: the restart waits and binds it.
	n.Shutdown()
	l := hold()
	go func() {
		time.Sleep(500 * time.Millisecond)
		l.Close()
	}()
	start := time.Now()
	if err := n.Start(); err != nil {
		t.Fatalf("restart once the port is free: %v", err)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("restarted after %s while the port was taken for 500ms: the test proves nothing", waited)
	}
	if n.URL() != url {
		t.Fatalf("url changed: %s -> %s", url, n.URL())
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	nc.Close()

	// Taken for good: a clear error naming the port, after restartWait.
	restartWait = 300 * time.Millisecond
	t.Cleanup(func() { restartWait = 10 * time.Second })
	n.Shutdown()
	l = hold()
	defer l.Close()
	err = n.Start()
	if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), "still taken") || !strings.Contains(err.Error(), url) {
		t.Fatalf("restart on a taken port: %v, want errPortInUse naming %s", err, url)
	}
}
