package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/loader"
)

// benchSupplier is the supplier every load run writes to.
const benchSupplier = 1

// ormBatch is the batch size of the ORM-style baseline (Django's bulk_create batch_size).
const ormBatch = 5000

// benchLoad times `tidemark load` against psql \copy of the same file (fresh) and against the
// ORM-style method (fresh, and a reload where 10% of the rows changed). Every run starts from
// the same table state: empty for fresh, the base drop loaded and vacuumed for reloads.
func benchLoad(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	base := filepath.Join(env.Dir, "drop.csv")
	changed := filepath.Join(env.Dir, "drop-10pct.csv")
	drop := benchDrop(benchSupplier)
	if err := fakedrop.WriteFile(base, drop.Products(env.Rows)); err != nil {
		return nil, err
	}
	if err := fakedrop.WriteFile(changed, drop.Reload(env.Rows, 10)); err != nil {
		return nil, err
	}
	_ = os.Chmod(base, 0o644)
	_ = os.Chmod(changed, 0o644)
	partition := catalog.PartitionName(benchSupplier)
	psql := env.psql()

	reset := func(withBase bool) error {
		if _, err := db.Pool.Exec(ctx, "TRUNCATE "+partition); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
		if withBase {
			if _, err := psqlCopy(ctx, psql, db.URL, base); err != nil {
				return err
			}
		}
		// A checkpoint too, so no run pays for the previous one's dirty pages.
		if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE "+partition); err != nil {
			return fmt.Errorf("vacuum: %w", err)
		}
		_, err := db.Pool.Exec(ctx, "CHECKPOINT")
		return err
	}
	load := func(file string) (Process, error) {
		return runProcess(ctx, env.Bin, "load", "--pg-url", db.URL, "--supplier", strconv.Itoa(benchSupplier), "--json", file)
	}
	rate := func(d time.Duration) float64 { return float64(env.Rows) / d.Seconds() }
	// versus is the result of run p against a baseline that took baseSeconds.
	versus := func(stage string, p Process, baseline string, baseSeconds float64) Result {
		return Result{Stage: stage, Rows: env.Rows, Seconds: p.Elapsed.Seconds(), Rate: rate(p.Elapsed),
			Baseline: baseline, BaselineSeconds: baseSeconds, Ratio: p.Elapsed.Seconds() / baseSeconds,
			PeakRSSMB: float64(p.PeakRSS) / (1 << 20)}
	}
	// orm times the ORM-style baseline loading file into the table reset(withBase) leaves.
	orm := func(withBase bool, file string) (time.Duration, error) {
		if err := reset(withBase); err != nil {
			return 0, err
		}
		return ormLoad(ctx, db.Pool, file)
	}
	var results []Result

	// The machine is shared: every tidemark and psql run happens twice, interleaved, and the
	// faster of the two counts. The ORM-style runs are long enough to run once.
	best := func(runs int, f func() (Process, error)) (Process, error) {
		var b Process
		for i := 0; i < runs; i++ {
			p, err := f()
			if err != nil {
				return p, err
			}
			if i == 0 || p.Elapsed < b.Elapsed {
				b = p
			}
		}
		return b, nil
	}

	// Fresh: an empty partition.
	var fresh, pcopy Process
	for i := 0; i < 2; i++ {
		if err := reset(false); err != nil {
			return nil, err
		}
		p, err := load(base)
		if err != nil {
			return nil, err
		}
		env.Log.Info("load fresh", "tidemark", p.Elapsed, "summary", lastLine(p.Output))
		if i == 0 || p.Elapsed < fresh.Elapsed {
			fresh = p
		}
		if err := reset(false); err != nil {
			return nil, err
		}
		if p, err = psqlCopy(ctx, psql, db.URL, base); err != nil {
			return nil, err
		}
		env.Log.Info("load fresh", "psql \\copy", p.Elapsed)
		if i == 0 || p.Elapsed < pcopy.Elapsed {
			pcopy = p
		}
	}
	ormFresh, err := orm(false, base)
	if err != nil {
		return nil, err
	}
	env.Log.Info("load fresh", "orm", ormFresh)
	results = append(results,
		versus("load fresh", fresh, `psql \copy`, pcopy.Elapsed.Seconds()),
		versus("load fresh", fresh, "ORM batches", ormFresh.Seconds()),
	)

	// Reload with 10% of the rows changed, from the base drop loaded.
	reload, err := best(2, func() (Process, error) {
		if err := reset(true); err != nil {
			return Process{}, err
		}
		p, err := load(changed)
		if err == nil {
			env.Log.Info("load reload 10%", "tidemark", p.Elapsed, "summary", lastLine(p.Output))
		}
		return p, err
	})
	if err != nil {
		return nil, err
	}
	ormReload, err := orm(true, changed)
	if err != nil {
		return nil, err
	}
	env.Log.Info("load reload 10%", "orm", ormReload)
	results = append(results, versus("load reload 10%", reload, "ORM batches", ormReload.Seconds()))

	// An identical reload: nothing to write.
	if err := reset(true); err != nil {
		return nil, err
	}
	same, err := load(base)
	if err != nil {
		return nil, err
	}
	var sum struct{ Inserted, Updated, Unchanged int64 }
	_ = json.Unmarshal([]byte(lastLine(same.Output)), &sum)
	results = append(results, Result{Stage: "load reload identical", Rows: env.Rows, Seconds: same.Elapsed.Seconds(), Rate: rate(same.Elapsed),
		PeakRSSMB: float64(same.PeakRSS) / (1 << 20),
		Note:      fmt.Sprintf("%d inserted, %d updated, %d unchanged", sum.Inserted, sum.Updated, sum.Unchanged)})
	return results, nil
}

// psqlCopy loads the CSV file straight into the partition with psql's \copy: the floor for a
// fresh load. It goes through the parent (before PostgreSQL 17 a partition lacks the identity
// default), which gets a supplier_id default for the duration, as the file has none.
func psqlCopy(ctx context.Context, psql, url, file string) (Process, error) {
	if _, err := runProcess(ctx, psql, "-X", "-q", "-d", url, "-c",
		fmt.Sprintf("ALTER TABLE products ALTER supplier_id SET DEFAULT %d", benchSupplier)); err != nil {
		return Process{}, err
	}
	p, err := runProcess(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c",
		fmt.Sprintf(`\copy products (%s) FROM '%s' WITH (FORMAT csv, HEADER true)`, strings.Join(loader.Columns[:], ", "), file))
	if err != nil {
		return p, err
	}
	_, err = runProcess(ctx, psql, "-X", "-q", "-d", url, "-c", "ALTER TABLE products ALTER supplier_id DROP DEFAULT")
	return p, err
}

// ormLoad is the method tidemark replaces: an ORM's bulk upsert in batches of 5,000 rows
// (INSERT … VALUES … ON CONFLICT DO UPDATE of every column), in one transaction.
func ormLoad(ctx context.Context, pool *pgxpool.Pool, file string) (time.Duration, error) {
	start := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	if _, err := r.Read(); err != nil {
		return 0, err
	}
	const cols = 1 + len(loader.Columns)
	var stmt strings.Builder
	build := func(rows int) string {
		stmt.Reset()
		stmt.WriteString("INSERT INTO products (supplier_id, " + strings.Join(loader.Columns[:], ", ") + ") VALUES ")
		for i := 0; i < rows; i++ {
			if i > 0 {
				stmt.WriteByte(',')
			}
			stmt.WriteByte('(')
			for c := range cols {
				if c > 0 {
					stmt.WriteByte(',')
				}
				fmt.Fprintf(&stmt, "$%d", i*cols+c+1)
			}
			stmt.WriteByte(')')
		}
		stmt.WriteString(` ON CONFLICT (supplier_id, sku) DO UPDATE SET name = EXCLUDED.name,
			description = EXCLUDED.description, price = EXCLUDED.price, currency = EXCLUDED.currency,
			attributes = EXCLUDED.attributes, status = EXCLUDED.status, updated_at = now()`)
		return stmt.String()
	}
	full := build(ormBatch)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		args := make([]any, 0, ormBatch*cols)
		flush := func(sql string) error {
			if len(args) == 0 {
				return nil
			}
			_, err := tx.Exec(ctx, sql, args...)
			args = args[:0]
			return err
		}
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			args = append(args, benchSupplier)
			for _, f := range rec {
				args = append(args, f)
			}
			if len(args) == ormBatch*cols {
				if err := flush(full); err != nil {
					return err
				}
			}
		}
		return flush(build(len(args) / cols))
	})
	if err != nil {
		return 0, fmt.Errorf("orm-style load: %w", err)
	}
	return time.Since(start), nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
