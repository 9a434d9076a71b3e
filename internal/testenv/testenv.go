package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/internal/sandbox"
)

var (
	sharedOnce sync.Once
	shared     *sandbox.Postgres
	sharedErr  error
	dbSeq      atomic.Int64
)

// Main runs the tests and then stops the shared cluster. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if reports := leftoverRaceReports(); reports != "" {
		fmt.Fprintf(os.Stderr, "testenv: a tidemark subprocess found a data race:\n%s", reports)
		if code == 0 {
			code = 1
		}
	}
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop shared postgres:", err)
		}
	}
	laneMu.Lock()
	for _, pg := range lanes {
		if pg != shared {
			if err := pg.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "testenv: stop postgres:", err)
			}
		}
	}
	laneMu.Unlock()
	os.Exit(code)
}

// Cluster returns the test binary's shared cluster, starting it on first use.
func Cluster(tb testing.TB) *sandbox.Postgres {
	tb.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, sharedErr = sandbox.StartPostgres(ctx, sandbox.PostgresOptions{})
	})
	if sharedErr != nil {
		tb.Fatalf("start postgres: %v", sharedErr)
	}
	return shared
}

var (
	laneMu sync.Mutex
	lanes  []*sandbox.Postgres // every cluster Lane started, and the shared one once lent
	idle   []*sandbox.Postgres // those no test holds
)

// Lane returns a cluster that no other test uses until this one ends, for a test that runs in
// parallel with others (t.Parallel) and creates or reads cluster-wide objects: replication
// slots have cluster-wide names (every replicator's is tidemark by default), and status and
// doctor read pg_replication_slots, which lists the slots of every database. A test holding a
// lane creates its databases in it (DatabaseIn) and, like any other, drops its slots before it
// ends. Clusters are started on demand (the shared one is lent first), kept for the next test,
// and stopped by Main; there are never more than the tests running at once.
func Lane(tb testing.TB) *sandbox.Postgres {
	tb.Helper()
	first := Cluster(tb)
	laneMu.Lock()
	if len(lanes) == 0 {
		lanes = append(lanes, first)
		idle = append(idle, first)
	}
	var pg *sandbox.Postgres
	if n := len(idle); n > 0 {
		pg, idle = idle[n-1], idle[:n-1]
	}
	laneMu.Unlock()
	if pg == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		if pg, err = sandbox.StartPostgres(ctx, sandbox.PostgresOptions{}); err != nil {
			tb.Fatalf("start postgres: %v", err)
		}
		laneMu.Lock()
		lanes = append(lanes, pg)
		laneMu.Unlock()
	}
	// Registered before anything the test does with the cluster, so it runs after their
	// cleanups (the slots dropped, the subprocesses killed).
	tb.Cleanup(func() {
		laneMu.Lock()
		idle = append(idle, pg)
		laneMu.Unlock()
	})
	return pg
}

// Database creates a fresh database in the shared cluster, named after the test, and returns
// its URL. Replication slots are per database too, so tests do not see each other's slots...
// but slots count against the cluster's max_replication_slots: drop yours when done.
func Database(tb testing.TB) string {
	tb.Helper()
	return DatabaseIn(tb, Cluster(tb))
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// VectorsEnv names the vector layout the tests' databases get (auto, pgvector or array):
// `make test` runs the suite with pgvector, then the vector tests again with array. Unset, a
// database keeps the migrations' default (pgvector when the server has it).
const VectorsEnv = "TIDEMARK_TEST_VECTORS"

// Vectors is the layout VectorsEnv asks for ("" when unset).
func Vectors() string { return os.Getenv(VectorsEnv) }

// DatabaseIn creates a fresh database in cluster pg and returns its URL. Its tidemark.vectors
// setting is $TIDEMARK_TEST_VECTORS when set, so every migration in it picks that layout.
func DatabaseIn(tb testing.TB, pg *sandbox.Postgres) string {
	tb.Helper()
	return DatabaseVectors(tb, pg, Vectors())
}

// DatabaseVectors creates a fresh database in cluster pg whose migrations store vectors as
// layout (auto, pgvector or array; "" leaves the default), for tests that run both paths.
func DatabaseVectors(tb testing.TB, pg *sandbox.Postgres, layout string) string {
	tb.Helper()
	name := nonWord.ReplaceAllString(strings.ToLower(tb.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%s", dbSeq.Add(1), name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := pg.CreateDatabase(ctx, name)
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	switch layout {
	case "":
		return url
	case "auto", "pgvector", "array":
	default:
		tb.Fatalf("%s=%q: want auto, pgvector or array", VectorsEnv, layout)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s SET tidemark.vectors = '%s'",
		pgx.Identifier{name}.Sanitize(), layout)); err != nil {
		tb.Fatalf("set the vector layout: %v", err)
	}
	return url
}

// Postgres starts a cluster for this test alone (to kill or restart it) and removes it when
// the test ends.
func Postgres(tb testing.TB, opts ...sandbox.PostgresOptions) *sandbox.Postgres {
	tb.Helper()
	var o sandbox.PostgresOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := sandbox.StartPostgres(ctx, o)
	if err != nil {
		tb.Fatalf("start postgres: %v", err)
	}
	tb.Cleanup(func() {
		if err := pg.Close(); err != nil {
			tb.Logf("stop postgres: %v", err)
		}
	})
	return pg
}

// Pool opens a pgx pool on url, closed when the test ends.
func Pool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// NATS starts an embedded nats-server with JetStream for this test alone.
func NATS(tb testing.TB) *sandbox.NATS {
	tb.Helper()
	n, err := sandbox.StartNATS(sandbox.NATSOptions{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	return n
}

// Context returns a context cancelled when the test ends or after d, whichever comes first.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
