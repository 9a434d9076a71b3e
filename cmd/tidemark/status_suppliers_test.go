package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/internal/testenv"
)

// supplierDrop writes a CSV drop of products 0..n-1 of supplier, skipping those in gone, with
// the names of those in renamed changed, and returns its path.
func supplierDrop(t *testing.T, n int, renamed, gone map[int]bool) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("sku,name,description,price\n")
	for i := range n {
		if gone[i] {
			continue
		}
		name := fmt.Sprintf("Trail lantern %d", i)
		if renamed[i] {
			name = fmt.Sprintf("Storm lantern %d", i)
		}
		fmt.Fprintf(&b, "L-%04d,%s,\"A lantern, number %d, for wet nights\",%d.99\n", i, name, i, 10+i%40)
	}
	path := filepath.Join(t.TempDir(), "drop.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// supplierStatus runs status --supplier id --json and returns the supplier's part.
func (e *replEnv) supplierStatus(t *testing.T, id int) health.SupplierStatus {
	t.Helper()
	stdout, stderr, _ := runTidemark(t, e.url, e.nats.URL(), "status", "--json", "--supplier", fmt.Sprint(id))
	var st health.Status
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s\n%s", err, stdout, stderr)
	}
	if len(st.Suppliers) != 1 || int(st.Suppliers[0].ID) != id {
		t.Fatalf("status --supplier %d gave suppliers %+v", id, st.Suppliers)
	}
	return st.Suppliers[0]
}

func (e *replEnv) load(t *testing.T, supplier int, path string, args ...string) {
	t.Helper()
	out, stderr, code := runTidemark(t, e.url, e.nats.URL(), append([]string{"load", "--supplier", fmt.Sprint(supplier), path}, args...)...)
	if code != 0 {
		t.Fatalf("load: exit %d\n%s\n%s", code, out, stderr)
	}
}

func stop(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("stop: %v\n%s", err, p.out.String())
	}
}

func vectors(s health.SupplierStatus) health.SupplierVectors {
	if len(s.Vectors) != 1 {
		return health.SupplierVectors{Live: -1}
	}
	return s.Vectors[0]
}

// TestStatusSuppliers follows two suppliers' drops through status --supplier while the encoders
// and then the replicator are stopped: what is not in the vectors yet must show as stale, as the
// oldest unembedded change and as a load not yet replicated, and clear once they run again.
func TestStatusSuppliers(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	repl := e.replicate(t)
	repl.streaming(t)
	enc := e.start(t, "encode", "--http-addr=", "--batch-wait", "100ms")

	e.load(t, 1, supplierDrop(t, 200, nil, nil))
	var s health.SupplierStatus
	testenv.WaitFor(t, "supplier 1's vectors", time.Minute, func() bool {
		s = e.supplierStatus(t, 1)
		return vectors(s).Live == 200 && s.Stale != nil && *s.Stale == 0 && s.OldestUnembedded == nil
	})
	if l := s.LastLoad; l == nil || l.Inserted != 200 || l.Products != 200 || l.Full || l.InStream == nil || !*l.InStream {
		t.Fatalf("last load %+v, want 200 inserted, 200 products, in the stream", l)
	}
	if s.Products != 200 || s.Name != "" || s.Partition != "products_s1" || vectors(s).Missing != 0 {
		t.Errorf("supplier 1: %+v", s)
	}

	// With the encoders stopped, a full drop renames 20 products and drops 10: 30 vectors are
	// behind their products until the encoders run again.
	stop(t, enc)
	renamed, gone := map[int]bool{}, map[int]bool{}
	for i := range 20 {
		renamed[i*7] = true
	}
	for i := range 10 {
		gone[i*7+3] = true
	}
	e.load(t, 1, supplierDrop(t, 200, renamed, gone), "--full")
	testenv.WaitFor(t, "the drop in the stream", time.Minute, func() bool {
		s = e.supplierStatus(t, 1)
		return s.Stale != nil && *s.Stale == 30
	})
	l := s.LastLoad
	if l == nil || l.Updated != 20 || l.Deleted != 10 || l.Unchanged != 170 || !l.Full || l.Products != 190 {
		t.Fatalf("last load %+v, want 20 updated, 10 deleted, 170 unchanged, 190 products", l)
	}
	if v := vectors(s); v.Live != 200 || v.Deleted != 0 {
		t.Errorf("vectors %+v while the encoders are stopped, want the 200 of before", v)
	}
	if o := s.OldestUnembedded; o == nil || o.Before(l.Started) || o.After(l.Finished.Add(5*time.Second)) {
		t.Errorf("oldest unembedded %v, want the drop's commit (recorded %v..%v)", o, l.Started, l.Finished)
	}
	text, _, _ := runTidemark(t, e.url, e.nats.URL(), "status", "--supplier", "1")
	for _, want := range []string{"stale              30 (updates and deletes consumer encoders has not applied)",
		"20 updated, 10 deleted, 170 unchanged", "190 products after it", "oldest unembedded  20"} {
		if !strings.Contains(text, want) {
			t.Errorf("status --supplier 1 lacks %q:\n%s", want, text)
		}
	}

	// With the replicator stopped too, supplier 2's first drop is not in the stream: status
	// says so, and its oldest unembedded change is the load.
	stop(t, repl)
	e.load(t, 2, supplierDrop(t, 50, nil, nil))
	s2 := e.supplierStatus(t, 2)
	if l := s2.LastLoad; l == nil || l.Inserted != 50 || l.InStream == nil || *l.InStream {
		t.Fatalf("supplier 2's last load %+v, want 50 inserted and not in the stream", l)
	}
	if o := s2.OldestUnembedded; o == nil || !o.Equal(s2.LastLoad.Finished) {
		t.Errorf("supplier 2's oldest unembedded %v, want its load's %v", o, s2.LastLoad.Finished)
	}
	text, _, _ = runTidemark(t, e.url, e.nats.URL(), "status")
	if !strings.Contains(text, "+50 ~0 -0, not yet replicated") || !strings.Contains(text, "~190") {
		t.Errorf("status lacks supplier 2's unreplicated load or supplier 1's products:\n%s", text)
	}

	// Running again, both suppliers' changes reach the vectors.
	e.replicate(t).streaming(t)
	e.start(t, "encode", "--http-addr=", "--batch-wait", "100ms")
	testenv.WaitFor(t, "every change in the vectors", time.Minute, func() bool {
		s, s2 = e.supplierStatus(t, 1), e.supplierStatus(t, 2)
		return vectors(s).Live == 190 && vectors(s).Deleted == 10 && *s.Stale == 0 && s.OldestUnembedded == nil &&
			vectors(s2).Live == 50 && s2.OldestUnembedded == nil && *s2.LastLoad.InStream
	})
	// The counts the triggers kept are the table's.
	var mismatches int
	if err := e.pool.QueryRow(testenv.Context(t, time.Minute), `SELECT count(*) FROM (
		SELECT supplier_id, model, count(*) FILTER (WHERE NOT deleted) AS live, count(*) FILTER (WHERE deleted) AS deleted
		FROM product_embeddings GROUP BY 1, 2) t
		FULL JOIN tidemark_vector_counts c USING (supplier_id, model)
		WHERE t.live IS DISTINCT FROM c.live OR t.deleted IS DISTINCT FROM c.deleted`).Scan(&mismatches); err != nil {
		t.Fatal(err)
	}
	if mismatches != 0 {
		t.Errorf("%d (supplier, model) counts differ from product_embeddings", mismatches)
	}

	if _, stderr, code := runTidemark(t, e.url, e.nats.URL(), "status", "--supplier", "99"); code != 1 || !strings.Contains(stderr, "supplier 99: no such supplier") {
		t.Errorf("status --supplier 99: exit %d, stderr %q", code, stderr)
	}
}
