package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestReservePort: a port comes from outside the ephemeral range, and a reserved one is not
// handed out again while its lock is held.
func TestReservePort(t *testing.T) {
	elo, ehi := ephemeralRange()
	port, lock, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if port >= elo && port <= ehi {
		t.Errorf("port %d is in the ephemeral range %d-%d", port, elo, ehi)
	}
	if again, err := lockPort(port); err == nil {
		again.Close()
		t.Fatalf("port %d locked twice", port)
	}
	lock.Close()
	again, err := lockPort(port)
	if err != nil {
		t.Fatalf("port %d still locked after its lock was closed: %v", port, err)
	}
	again.Close()
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// TestPostgresPortTaken: when the port chosen is taken (here by another sandbox PostgreSQL,
// which answers on it as ours would), StartPostgres never takes the other server for its own
// and starts on another port; a restart keeps its port, waits while another process holds it
// and says so when it stays taken.
func TestPostgresPortTaken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	other, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })

	handed := 0
	reserve = func() (int, io.Closer, error) {
		handed++
		if handed == 1 {
			return other.Port(), nopCloser{}, nil // as if the lock and the check had been beaten
		}
		return reservePort()
	}
	t.Cleanup(func() { reserve = reservePort })
	start := time.Now()
	pg, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatalf("start with the first port taken: %v", err)
	}
	t.Logf("started in %s", time.Since(start))
	t.Cleanup(func() { _ = pg.Close() })
	if handed != 2 || pg.Port() == other.Port() {
		t.Fatalf("%d ports handed out, started on %d (the taken one is %d)", handed, pg.Port(), other.Port())
	}
	dataDir := func() string {
		t.Helper()
		return show(ctx, t, pg, "data_directory")
	}
	if dir := dataDir(); dir != pg.DataDir() {
		t.Fatalf("connected to %s, want %s", dir, pg.DataDir())
	}

	// A restart on a port held for a while, then for good.
	url := pg.URL("postgres")
	take := func() net.Listener {
		t.Helper()
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pg.Port()))
		if err != nil {
			t.Fatalf("take the port: %v", err)
		}
		return l
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	l := take()
	go func(l net.Listener) {
		time.Sleep(time.Second)
		l.Close()
	}(l)
	start = time.Now()
	if err := pg.Start(ctx); err != nil {
		t.Fatalf("restart once the port is free: %v", err)
	}
	t.Logf("restarted in %s", time.Since(start))
	if pg.URL("postgres") != url || dataDir() != pg.DataDir() {
		t.Fatalf("restarted at %s, want %s", pg.URL("postgres"), url)
	}
	restartWait = 500 * time.Millisecond
	t.Cleanup(func() { restartWait = 10 * time.Second })
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	l = take()
	start = time.Now()
	err = pg.Start(ctx)
	l.Close()
	t.Logf("gave up after %s: %v", time.Since(start), err)
	if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), "still taken") {
		t.Fatalf("restart on a taken port: %v, want errPortInUse", err)
	}
}
