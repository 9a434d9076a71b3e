package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestServeOps: on --http-addr 127.0.0.1:0 the ops server binds a port of its own and logs
// it, and serves /healthz, /readyz (with the reason it is not ready) and /metrics there.
func TestServeOps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	notReady := errors.New("slot not acquired")
	var ready atomic.Bool
	var logs sandbox.Output
	errc := make(chan error, 1)
	go func() {
		errc <- serveOps(ctx, slog.New(slog.NewTextHandler(&logs, nil)), "127.0.0.1:0", newRegistry(), func() error {
			if ready.Load() {
				return nil
			}
			return notReady
		})
	}()
	addr := testenv.OpsAddr(t, &logs)
	if host, port, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("logged address %q, want 127.0.0.1 and the port bound", addr)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "slot not acquired") {
		t.Fatalf("/readyz = %d %q, want 503 with the reason", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d after ready", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d", code)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("serveOps after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveOps did not return after cancel")
	}
}
