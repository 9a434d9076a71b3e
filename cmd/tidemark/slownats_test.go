package main

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
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

// TestServicesExitWithoutNATS: replicate and encode started while no NATS server listens exit
// non-zero saying so, for their supervisor to start them again.
func TestServicesExitWithoutNATS(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	// Nothing listens on port 1 (tcpmux), and it is outside the range the kernel picks ports
	// from, where a port freed by a test could be taken by a nats-server another test starts.
	const nobody = "nats://127.0.0.1:1"
	for _, p := range []*proc{e.replicate(t, "--nats-url", nobody), e.start(t, "encode", "--http-addr=", "--nats-url", nobody)} {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			t.Fatalf("%s still runs a minute after it found no NATS server", p.cmd.Args[1])
		}
		var exit *exec.ExitError
		if !errors.As(p.err, &exit) || !strings.Contains(p.out.String(), "connect to nats "+nobody+": nats: no servers available") {
			t.Errorf("%s: exit %v, want non-zero, saying it cannot connect:\n%s", p.cmd.Args[1], p.err, p.out.String())
		}
	}
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
