package loader_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/loader"
)

type loadRow struct {
	Full                                                               bool
	Inserted, Updated, Unchanged, Deleted, Rejected, Duplicates, Count int64
	Started, Finished                                                  time.Time
}

func lastLoad(t *testing.T, pool *pgxpool.Pool, supplier int32) (loadRow, int) {
	t.Helper()
	var r loadRow
	var n int
	err := pool.QueryRow(context.Background(), `SELECT full_drop, inserted, updated, unchanged, deleted, rejected, duplicates,
		products, started_at, finished_at, (SELECT count(*) FROM tidemark_loads WHERE supplier_id = $1)
		FROM tidemark_loads WHERE supplier_id = $1 ORDER BY id DESC LIMIT 1`, supplier).
		Scan(&r.Full, &r.Inserted, &r.Updated, &r.Unchanged, &r.Deleted, &r.Rejected, &r.Duplicates, &r.Count, &r.Started, &r.Finished, &n)
	if err != nil {
		t.Fatal(err)
	}
	return r, n
}

// TestLoadRecord: every load that commits leaves one row in tidemark_loads with its counts and
// the supplier's exact product count after it, on the direct path and on reloads.
func TestLoadRecord(t *testing.T) {
	pool, _ := newDB(t)
	steps := []struct {
		name  string
		input string
		opts  loader.Options
	}{
		{"into an empty partition, with a duplicate and a reject", drop(300, 0, "S000001,dup,,,,\nbad,,,,,\n"), loader.Options{MaxRejects: -1}},
		{"a reload, every 10th repriced, with new products", drop(350, 10, ""), loader.Options{MaxRejects: -1}},
		{"a full drop that leaves 50 out", drop(300, 10, ""), loader.Options{MaxRejects: -1, Full: true}},
		{"the same again: nothing changes", drop(300, 10, ""), loader.Options{MaxRejects: -1, Full: true}},
	}
	for i, st := range steps {
		res, _ := mustLoad(t, pool, loader.CSV, st.input, st.opts)
		got, n := lastLoad(t, pool, 7)
		var count int64
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM products WHERE supplier_id = 7").Scan(&count); err != nil {
			t.Fatal(err)
		}
		want := loadRow{Full: st.opts.Full, Inserted: res.Inserted, Updated: res.Updated, Unchanged: res.Unchanged,
			Deleted: res.Deleted, Rejected: res.Rejected, Duplicates: res.Duplicates, Count: count,
			Started: got.Started, Finished: got.Finished}
		if got != want || n != i+1 || got.Finished.Before(got.Started) {
			t.Errorf("%s: recorded %+v (%d rows), want %+v (%d rows)", st.name, got, n, want, i+1)
		}
	}
}

// TestLoadRecordCommitsWithTheLoad: a load whose commit fails, after every row and the record
// were written, leaves neither.
func TestLoadRecordCommitsWithTheLoad(t *testing.T) {
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, drop(100, 0, ""), loader.Options{})
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE FUNCTION refuse_load() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$`,
		// Deferred: it fires at COMMIT, once the load has done all its work.
		`CREATE CONSTRAINT TRIGGER refuse_load AFTER INSERT ON tidemark_loads
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_load()`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := load(t, pool, loader.CSV, drop(150, 5, ""), loader.Options{})
	if err == nil || !strings.Contains(err.Error(), "commit refused by the test") {
		t.Fatalf("load: %v, want the refused commit", err)
	}
	got, n := lastLoad(t, pool, 7)
	var count, changed int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE price >= 1000) FROM products WHERE supplier_id = 7`).Scan(&count, &changed); err != nil {
		t.Fatal(err)
	}
	if n != 1 || got.Inserted != 100 || count != 100 || changed != 0 {
		t.Fatalf("after a refused commit: %d load rows (last %+v), %d products, %d repriced; want the first load's alone", n, got, count, changed)
	}
}
