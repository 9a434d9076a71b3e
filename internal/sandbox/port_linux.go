package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockPort reserves port among test processes with an abstract unix socket named after it (the
// sandbox is Linux-only already: Pdeathsig):
// it lives in the network namespace rather than a directory, so it is shared whatever TMPDIR
// each process has, leaves no file behind, and goes when its process does.
func lockPort(port int) (io.Closer, error) {
	l, err := net.Listen("unix", "@tidemark-sandbox-port-"+strconv.Itoa(port))
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("port %d is reserved by another process", port)
	}
	if err != nil {
		return nil, fmt.Errorf("reserve port %d: %w", port, err)
	}
	return l, nil
}

// ephemeralRange is the kernel's range for port-0 binds and outgoing connections.
func ephemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && lo > 0 && hi >= lo && hi < 65536 {
				return lo, hi
			}
		}
	}
	return 32768, 60999 // Linux's default
}
