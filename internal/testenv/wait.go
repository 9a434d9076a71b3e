package testenv

import (
	"fmt"
	"regexp"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test with what after d.
func WaitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loggedAddr matches the line a command's ops server logs once it listens (text or JSON).
var loggedAddr = regexp.MustCompile(`"?msg"?[=:]"serving metrics"[ ,]"?addr"?[=:]"?([^\s"]+)`)

// OpsAddr waits for the address a command's ops server (--http-addr, say 127.0.0.1:0) logged
// that it bound, in the command's output out, and returns it. The deadline is generous: a
// race-built command on a busy machine can take a while to get there.
func OpsAddr(tb testing.TB, out fmt.Stringer) string {
	tb.Helper()
	var addr string
	WaitFor(tb, "the ops server's address in the log", 2*time.Minute, func() bool {
		if m := loggedAddr.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return addr
}
