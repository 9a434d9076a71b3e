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
)

func TestServeOps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	notReady := errors.New("slot not acquired")
	var ready atomic.Bool
	errc := make(chan error, 1)
	go func() {
		errc <- serveOps(ctx, slog.New(slog.DiscardHandler), addr, newRegistry(), func() error {
			if ready.Load() {
				return nil
			}
			return notReady
		})
	}()
	get := func(path string) (int, string) {
		t.Helper()
		var resp *http.Response
		for i := 0; i < 100; i++ {
			resp, err = http.Get("http://" + addr + path)
			if err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
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
