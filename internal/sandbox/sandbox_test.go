package sandbox

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	pg, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	t.Logf("started in %v", time.Since(start))
	query := func() string { return show(ctx, t, pg, "wal_level") }
	if got := query(); got != "logical" {
		t.Fatalf("wal_level = %q", got)
	}
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	query()
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	query()
}

// show reads one of pg's settings over a connection of its own.
func show(ctx context.Context, t *testing.T, pg *Postgres, setting string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SHOW "+setting).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNATSRestart(t *testing.T) {
	n, err := StartNATS(NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	url := n.URL()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if n.URL() != url {
		t.Fatalf("url changed: %s -> %s", url, n.URL())
	}
}
