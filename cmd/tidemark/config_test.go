package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/config"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestConfigPrint runs the binary with a file, an environment variable and a flag, and checks
// every value's source and that no password is printed.
func TestConfigPrint(t *testing.T) {
	bin := testenv.Binary(t)
	file := filepath.Join(t.TempDir(), "tidemark.yaml")
	body := "pg-url: postgres://file:filepass@db/app\nnats-url: nats://u:natspass@n1:4222,nats://u:natspass@n2:4222\nlog-level: warn\nlog-format: json\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", file, "--log-level", "debug", "config", "print", "--json")
	cmd.Env = append(os.Environ(), "TIDEMARK_PG_URL=host=db user=env password=envpass dbname=app")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("config print: %v\n%s", err, stderr.String())
	}
	for _, secret := range []string{"filepass", "natspass", "envpass"} {
		if strings.Contains(stdout.String(), secret) {
			t.Errorf("config print shows the secret %q:\n%s", secret, stdout.String())
		}
	}
	var settings []Setting
	if err := json.Unmarshal(stdout.Bytes(), &settings); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout.String())
	}
	got := map[string]Setting{}
	for _, s := range settings {
		if s.Command == "" {
			got[s.Flag] = s
		}
	}
	want := map[string][2]string{
		"pg-url":     {"host=db user=env password=xxxxx dbname=app", "env"},
		"nats-url":   {"nats://u:xxxxx@n1:4222,nats://u:xxxxx@n2:4222", "file"},
		"log-level":  {"debug", "flag"},
		"log-format": {"json", "file"},
		"log-sql":    {"false", "default"},
	}
	for flag, w := range want {
		s, ok := got[flag]
		if !ok {
			t.Errorf("--%s missing from config print", flag)
			continue
		}
		if s.Value != w[0] || s.Source != w[1] {
			t.Errorf("--%s = %q from %s, want %q from %s", flag, s.Value, s.Source, w[0], w[1])
		}
	}
	if got["pg-url"].Env != "TIDEMARK_PG_URL" {
		t.Errorf("pg-url env = %q", got["pg-url"].Env)
	}
}

// TestLogSQL checks --log-sql logs every statement through the pool with its duration: plain
// queries, each query of a batch, and COPY.
func TestLogSQL(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)) // info level: --log-sql must not need debug
	g := &Globals{Postgres: config.Postgres{URL: testenv.Database(t)}, Log: config.Log{SQL: true}}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE logsql (n int)"); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1 AS batch_one")
	b.Queue("SELECT 2 AS batch_two")
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"logsql"}, []string{"n"}, pgx.CopyFromRows([][]any{{1}, {2}})); err != nil {
		t.Fatal(err)
	}
	_, _ = pool.Exec(ctx, "SELECT no_such_column FROM logsql")
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	find := func(sql string) map[string]any {
		for _, m := range lines {
			if s, _ := m["sql"].(string); strings.Contains(s, sql) {
				return m
			}
		}
		t.Errorf("no log line for %q in:\n%s", sql, buf.String())
		return nil
	}
	for _, sql := range []string{"CREATE TABLE logsql", "batch_one", "batch_two", `COPY "logsql" ("n") FROM STDIN`, "no_such_column"} {
		if m := find(sql); m != nil {
			if _, ok := m["duration"]; !ok {
				t.Errorf("log line for %q has no duration: %v", sql, m)
			}
		}
	}
	if m := find(`COPY "logsql"`); m != nil && m["rows"] != float64(2) {
		t.Errorf("COPY logged rows = %v, want 2", m["rows"])
	}
	if m := find("no_such_column"); m != nil && m["err"] == nil {
		t.Errorf("failed statement logged without its error: %v", m)
	}
}

// TestPGConfigSSLMode checks libpq's sslmode parameters reach the connection config.
func TestPGConfigSSLMode(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		url        string
		tls        bool
		verify     bool
		serverName string
	}{
		{url: "postgres://u@db/app?sslmode=disable"},
		{url: "postgres://u@db/app?sslmode=require", tls: true},
		{url: "postgres://u@db.example/app?sslmode=verify-full", tls: true, verify: true, serverName: "db.example"},
		{url: "host=db.example user=u sslmode=verify-full", tls: true, verify: true, serverName: "db.example"},
	}
	for _, tt := range tests {
		g := &Globals{Postgres: config.Postgres{URL: tt.url}}
		cfg, err := g.PGConfig(log)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		tc := cfg.ConnConfig.TLSConfig
		if (tc != nil) != tt.tls {
			t.Errorf("%s: TLS config %v, want TLS %v", tt.url, tc, tt.tls)
			continue
		}
		if tc != nil && tt.verify && (tc.InsecureSkipVerify || tc.ServerName != tt.serverName) {
			t.Errorf("%s: InsecureSkipVerify=%v ServerName=%q, want verification of %q", tt.url, tc.InsecureSkipVerify, tc.ServerName, tt.serverName)
		}
	}
	g := &Globals{Postgres: config.Postgres{URL: "postgres://u@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"}}
	if _, err := g.PGConfig(log); err == nil {
		t.Error("a missing sslrootcert parsed without error")
	}
}

// TestFlagsShareNoEnvironmentVariable guards against two commands' flags of one name but
// different meaning reading the same TIDEMARK_* variable (load --format csv vs replicate
// --format debezium once did).
func TestFlagsShareNoEnvironmentVariable(t *testing.T) {
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		t.Fatal(err)
	}
	// A flag's kind is its Go type and allowed values: same-named flags of one kind (--slot,
	// --json) may share a variable, flags of different kinds must not.
	owners := map[string]map[string]string{} // env → flag kind → command
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			for _, env := range f.Envs {
				if owners[env] == nil {
					owners[env] = map[string]string{}
				}
				owners[env][f.Target.Type().String()+" "+f.Enum] = n.Path()
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
	for env, helps := range owners {
		if len(helps) > 1 {
			t.Errorf("%s is read by flags of different kinds: %v", env, helps)
		}
	}
}

// TestVersionIgnoresEnvironment: a deployment that sets TIDEMARK_VERSION (an image tag, say)
// must still run its command rather than print a version and exit 0.
func TestVersionIgnoresEnvironment(t *testing.T) {
	t.Setenv("TIDEMARK_VERSION", "1.2.3")
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		t.Fatal(err)
	}
	exited := false
	parser.Exit = func(int) { exited = true }
	if _, err := parser.Parse([]string{"migrate"}); err != nil {
		t.Fatal(err)
	}
	if exited {
		t.Fatal("TIDEMARK_VERSION made the parser print the version and exit")
	}
}
