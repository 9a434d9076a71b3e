package main

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestReplicateWaitsForASlowNATS: a NATS server that takes 3s to answer the first connect
// (past nats.go's default 2s, as a starved or starting server does) does not make replicate
// exit: it streams once the server answers.
func TestReplicateWaitsForASlowNATS(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	u, err := url.Parse(e.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := e.replicate(t, "--nats-url", "nats://"+slowProxy(t, u.Host, 3*time.Second))
	p.streaming(t)
}

// slowProxy forwards connections to backend, holding what the backend sends on the first
// connection for delay; it returns its address.
func slowProxy(t *testing.T, backend string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(b, c)
				b.Close()
			}()
			go func(hold bool) {
				defer wg.Done()
				if hold {
					time.Sleep(delay)
				}
				_, _ = io.Copy(c, b)
				c.Close()
			}(first)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}
