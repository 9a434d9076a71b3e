package main

import (
	"io"
	"net/http"
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
	e := newReplEnv(t)
	raddr, eaddr := freeAddr(t), freeAddr(t)
	e.replicate(t, "--http-addr", raddr).streaming(t)
	e.start(t, "encode", "--http-addr", eaddr, "--batch-wait", "100ms")
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
