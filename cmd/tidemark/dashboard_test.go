package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/deploy"
	"github.com/tidemark/tidemark/internal/testenv"
)

// scrape reads a /metrics page.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// TestDashboardQueriesMatchMetrics: every query of the Grafana dashboard and of the alert rules
// selects series that the built `tidemark replicate` or `tidemark encode` exports from its
// /metrics: a metric name, label matcher or grouping label that no running process exports
// fails the test.
func TestDashboardQueriesMatchMetrics(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	rp := e.replicate(t, "--http-addr", "127.0.0.1:0")
	rp.streaming(t)
	ep := e.start(t, "encode", "--http-addr", "127.0.0.1:0", "--batch-wait", "100ms")
	raddr, eaddr := testenv.OpsAddr(t, rp.out), testenv.OpsAddr(t, ep.out)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, description)
		SELECT 1 + g % 2, 'D-' || g, 'Dashboard product ' || g, 'made for the dashboard test' FROM generate_series(1, 200) g`)
	// The vector series appear once the encoders have written vectors.
	var repl, enc string
	testenv.WaitFor(t, "vectors in encode's /metrics", 2*time.Minute, func() bool {
		enc = scrape(t, eaddr)
		return strings.Contains(enc, `state="live"} 200`)
	})
	repl = scrape(t, raddr)
	series := deploy.Series{}
	for name, page := range map[string]string{"replicate": repl, "encode": enc} {
		if err := series.ReadExposition(strings.NewReader(page)); err != nil {
			t.Fatalf("%s /metrics: %v", name, err)
		}
	}
	qs, err := deploy.Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		for _, err := range series.Check(q.Expr) {
			t.Errorf("%s: %v", q.Where, err)
		}
	}
	if t.Failed() {
		t.Logf("replicate /metrics:\n%s\nencode /metrics:\n%s", repl, enc)
	}
}

// metricValue reads an unlabelled series' value from a /metrics page (-1 when absent).
func metricValue(page, name string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestSlotLagSeconds: while NATS is down a committed change cannot be confirmed, and the slot's
// lag in time grows with its age; once NATS is back and the change confirmed, it is 0 again.
func TestSlotLagSeconds(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	p := e.replicate(t, "--http-addr", "127.0.0.1:0")
	p.streaming(t)
	addr := testenv.OpsAddr(t, p.out)
	e.exec(t, "INSERT INTO products (supplier_id, sku, name) VALUES (1, 'LAG-1', 'before')")
	testenv.WaitFor(t, "the first change confirmed", time.Minute, func() bool {
		page := scrape(t, addr)
		return strings.Contains(page, `tidemark_replication_changes_total{op="insert"} 1`) &&
			metricValue(page, "tidemark_replication_slot_lag_seconds") == 0
	})
	e.nats.Shutdown()
	e.exec(t, "INSERT INTO products (supplier_id, sku, name) VALUES (1, 'LAG-2', 'while NATS is down')")
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the lag in time to grow", time.Minute, func() bool {
		return metricValue(scrape(t, addr), "tidemark_replication_slot_lag_seconds") >= 3
	})
	if s := e.slot(t); s.ConfirmedLSN >= end {
		t.Fatalf("the slot confirmed %s past the change made while NATS was down (%s): the test proves nothing", s.ConfirmedLSN, end)
	}
	if err := e.nats.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the change confirmed and the lag back to 0", 2*time.Minute, func() bool {
		return e.slot(t).ConfirmedLSN >= end && metricValue(scrape(t, addr), "tidemark_replication_slot_lag_seconds") == 0
	})
}
