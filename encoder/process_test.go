package encoder_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
)

// proc is a running tidemark subprocess.
type proc struct {
	cmd  *exec.Cmd
	out  *sandbox.Output
	done chan struct{} // closed once it exited; err is then its exit error
	err  error
}

func (e *env) encodeProcess(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	out := &sandbox.Output{}
	cmd := exec.Command(testenv.Binary(t), append([]string{"encode", "--pg-url", e.pgURL, "--nats-url", e.natsURL,
		"--http-addr", "", "--workers", "2", "--batch", "50", "--batch-wait", "100ms", "--ack-wait", "2s"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return p
}

// wait waits up to d for the process to exit and returns its exit error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("process did not exit within %s\n%s", d, p.out.String())
		return nil
	}
}

// Two encoder processes share the consumer; one is killed -9 while it holds a batch. The
// other (and the redeliveries of what the dead one held) must leave the vector table equal to
// the products.
func TestKill9OneOfTwoProcesses(t *testing.T) {
	t.Parallel() // waits on redeliveries and subprocesses, with servers of its own
	e := newEnv(t)
	// A embeds through an endpoint that never answers: every batch it takes stays in its hands,
	// unacked (it keeps them in progress while it waits), until it dies.
	stuck, url := newFakeOpenAI(t, 0, 0)
	stuck.delay = time.Hour
	a := e.encodeProcess(t, "encoder A", "--embedder", "openai", "--embed-url", url, "--embed-model", "test-model")
	b := e.encodeProcess(t, "encoder B", "--http-addr", "127.0.0.1:0")

	var keys []event.Key
	for i := range 600 {
		p := e.insert(int64(1+i%2), fmt.Sprintf("S-%d", i), fmt.Sprintf("Item %d", i), fmt.Sprintf("Thing number %d", i))
		keys = append(keys, p.key)
	}
	eventually(t, time.Minute, func() string {
		if n := len(e.vectors(e.model)); n < 50 {
			return fmt.Sprintf("only %d vectors", n)
		}
		if stuck.received() == 0 {
			return "encoder A holds no batch"
		}
		return ""
	})
	cons, err := e.js.Consumer(e.ctx, event.Stream, encoder.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	// The precondition: A holds messages it will never ack (at least one per text it sent).
	held := stuck.received()
	info, err := cons.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending < held {
		t.Fatalf("before the kill: %d messages ack pending, want at least the %d A holds", info.NumAckPending, held)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.wait(t, time.Minute)
	const inserts = 600
	changes := e.churn(keys)
	eventually(t, 2*time.Minute, func() string {
		info, err := cons.Info(e.ctx)
		if err != nil {
			return err.Error()
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Sprintf("%d pending, %d ack pending", info.NumPending, info.NumAckPending)
		}
		return e.converged(e.model)
	})
	// Exactly the products: one row each (a tombstone for the deleted), none from A's model.
	if n, want := len(e.vectors(e.model)), inserts; n != want {
		t.Fatalf("%d vector rows, want %d", n, want)
	}
	if n := len(e.vectors("test-model")); n != 0 {
		t.Fatalf("encoder A wrote %d vectors although it never got an embedding back", n)
	}
	// What A held came back: the consumer delivered more often than the stream has messages,
	// by at least what A held (every delivery takes a consumer sequence, only a first one a
	// stream sequence).
	if info, err = cons.Info(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := info.Delivered.Stream; got != uint64(inserts+changes) {
		t.Fatalf("delivered up to stream sequence %d, want %d", got, inserts+changes)
	}
	if redelivered := info.Delivered.Consumer - info.Delivered.Stream; redelivered < uint64(held) {
		t.Fatalf("%d redeliveries, want at least the %d messages A held at the kill", redelivered, held)
	}

	// Search finds the product by its words, and --json is valid, hits best first.
	want := keys[43]
	out, err := exec.Command(testenv.Binary(t), "search", "--pg-url", e.pgURL, "--json", "-k", "3", "Item 43 Thing number 43").Output()
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	var res encoder.SearchResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("search --json is not JSON: %v\n%s", err, out)
	}
	hits := res.Hits
	if len(hits) != 3 || hits[0].ProductID != want.ID || hits[0].SupplierID != want.SupplierID || hits[0].SKU != "S-43" ||
		hits[0].Score < hits[1].Score || hits[0].Score <= 0 {
		t.Fatalf("search hits: %+v, want product %v first", hits, want)
	}
	out, err = exec.Command(testenv.Binary(t), "search", "--pg-url", e.pgURL, "--supplier", "2", "Item 43").Output()
	if err != nil || !strings.Contains(string(out), "S-43") || !strings.Contains(string(out), "SCORE") {
		t.Fatalf("search table: %v\n%s", err, out)
	}
	// A deleted product is never found.
	out, err = exec.Command(testenv.Binary(t), "search", "--pg-url", e.pgURL, "--json", "-k", "1", "Item 41 Thing number 41").Output()
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	res = encoder.SearchResult{}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Hits) != 1 {
		t.Fatalf("search --json: %v, want one hit\n%s", err, out)
	}
	if res.Hits[0].SKU == "S-41" {
		t.Fatalf("search found a deleted product: %s", out)
	}

	// The survivor serves its metrics and readiness.
	m := regexp.MustCompile(`serving metrics"? addr=(\S+)`).FindStringSubmatch(b.out.String())
	if m == nil {
		t.Fatalf("no metrics address in the output:\n%s", b.out.String())
	}
	for path, want := range map[string]string{
		"/metrics": `tidemark_encoder_events_total{result="embedded"}`,
		"/readyz":  "ready",
	} {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
		}
	}

	// SIGTERM: the survivor finishes its batch and exits 0.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.wait(t, time.Minute); err != nil {
		t.Fatalf("encoder B after SIGTERM: %v\n%s", err, b.out.String())
	}
}

// --exit-idle ends encode once the stream is drained.
func TestEncodeExitIdle(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		e.insert(1, fmt.Sprintf("E-%d", i), fmt.Sprintf("Idle %d", i), "")
	}
	p := e.encodeProcess(t, "encoder", "--exit-idle", "300ms")
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("encode --exit-idle: %v\n%s", err, p.out.String())
	}
	if why := e.converged(e.model); why != "" {
		t.Fatal(why)
	}
}

// SIGTERM while a batch is being embedded: the batch finishes, is written and acked, and the
// process exits 0.
func TestSIGTERMFinishesTheBatchInHand(t *testing.T) {
	t.Parallel() // waits on redeliveries and subprocesses, with servers of its own
	e := newEnv(t)
	fake, url := newFakeOpenAI(t, 0, 0)
	fake.delay = 2 * time.Second
	for i := range 5 {
		e.insert(1, fmt.Sprintf("G-%d", i), fmt.Sprintf("Graceful %d", i), "")
	}
	p := e.encodeProcess(t, "encoder", "--embedder", "openai", "--embed-url", url, "--embed-model", "test-model", "--workers", "1")
	select {
	case <-fake.started:
	case <-time.After(time.Minute):
		t.Fatalf("no embedding request\n%s", p.out.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("encode after SIGTERM: %v\n%s", err, p.out.String())
	}
	if why := e.converged("test-model"); why != "" {
		t.Fatalf("the batch in hand was not finished: %s", why)
	}
	cons, err := e.js.Consumer(e.ctx, event.Stream, encoder.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after SIGTERM: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
}
