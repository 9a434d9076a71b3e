package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/tidemark/tidemark/config"
)

// httpFlags is a command flag that the file can set per command or for every command, as
// replicate's and encode's --http-addr.
type httpFlags struct {
	Addr string `name:"http-addr" help:"Address for /metrics."`
}

type testCLI struct {
	Config config.FileFlag `name:"config" type:"path"`
	config.Postgres
	config.NATS
	config.Log
	Replicate struct {
		httpFlags
		BatchSize int `name:"batch-size" default:"100"`
	} `cmd:""`
	Encode struct {
		httpFlags
	} `cmd:""`
}

func parse(t *testing.T, args ...string) (*testCLI, error) {
	t.Helper()
	var cli testCLI
	p, err := kong.New(&cli, kong.DefaultEnvars("TIDEMARK"), kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(args)
	return &cli, err
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tidemark.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPrecedence checks flags > environment > file > defaults for global and command flags.
func TestPrecedence(t *testing.T) {
	const file = `
pg-url: postgres://file@db/file
nats-url: nats://file:4222
log-level: warn
http-addr: ":1111"
replicate:
  http-addr: ":9464"
  batch-size: 7
`
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		pgURL     string
		natsURL   string
		level     string
		httpAddr  string
		batchSize int
	}{
		{name: "defaults only", args: []string{"replicate"},
			pgURL: "postgres://postgres@localhost:5432/postgres", natsURL: "nats://127.0.0.1:4222", level: "info", batchSize: 100},
		{name: "file over defaults", args: []string{"--config", "FILE", "replicate"},
			pgURL: "postgres://file@db/file", natsURL: "nats://file:4222", level: "warn", httpAddr: ":9464", batchSize: 7},
		{name: "bare key applies to a command without a section", args: []string{"--config", "FILE", "encode"},
			pgURL: "postgres://file@db/file", natsURL: "nats://file:4222", level: "warn", httpAddr: ":1111", batchSize: 100},
		{name: "env over file", args: []string{"--config", "FILE", "replicate"},
			env:   map[string]string{"TIDEMARK_PG_URL": "postgres://env@db/env", "TIDEMARK_HTTP_ADDR": ":2222", "TIDEMARK_LOG_LEVEL": "error"},
			pgURL: "postgres://env@db/env", natsURL: "nats://file:4222", level: "error", httpAddr: ":2222", batchSize: 7},
		{name: "flag over env and file", args: []string{"--config", "FILE", "--pg-url", "postgres://flag@db/flag", "replicate", "--http-addr", ":3333"},
			env:   map[string]string{"TIDEMARK_PG_URL": "postgres://env@db/env", "TIDEMARK_HTTP_ADDR": ":2222"},
			pgURL: "postgres://flag@db/flag", natsURL: "nats://file:4222", level: "warn", httpAddr: ":3333", batchSize: 7},
		{name: "config file named by the environment", args: []string{"replicate"},
			env:   map[string]string{"TIDEMARK_CONFIG": "FILE"},
			pgURL: "postgres://file@db/file", natsURL: "nats://file:4222", level: "warn", httpAddr: ":9464", batchSize: 7},
		{name: "env set to empty still beats the file", args: []string{"--config", "FILE", "replicate"},
			env:   map[string]string{"TIDEMARK_HTTP_ADDR": ""},
			pgURL: "postgres://file@db/file", natsURL: "nats://file:4222", level: "warn", httpAddr: "", batchSize: 7},
	}
	path := writeFile(t, file)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				if v == "FILE" {
					v = path
				}
				t.Setenv(k, v)
			}
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "FILE" {
					args[i] = path
				}
			}
			cli, err := parse(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			httpAddr := cli.Replicate.Addr
			if args[len(args)-1] == "encode" {
				httpAddr = cli.Encode.Addr
			}
			if cli.Postgres.URL != tt.pgURL || cli.NATS.URL != tt.natsURL || cli.Log.Level != tt.level ||
				httpAddr != tt.httpAddr || cli.Replicate.BatchSize != tt.batchSize {
				t.Errorf("got pg-url=%q nats-url=%q log-level=%q http-addr=%q batch-size=%d\nwant pg-url=%q nats-url=%q log-level=%q http-addr=%q batch-size=%d",
					cli.Postgres.URL, cli.NATS.URL, cli.Log.Level, httpAddr, cli.Replicate.BatchSize,
					tt.pgURL, tt.natsURL, tt.level, tt.httpAddr, tt.batchSize)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"typo in a key", "pg_url: postgres://x\n", "unknown keys pg_url"},
		{"unknown key in a command section", "replicate:\n  http-adr: x\n", "replicate.http-adr"},
		{"not YAML", "pg-url: [\n", "config file"},
		{"bad enum value", "log-level: loud\n", "log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, "--config", writeFile(t, tt.body), "replicate")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := parse(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"), "replicate"); err == nil {
		t.Fatal("a missing config file parsed without error")
	}
	if _, err := parse(t, "--config", writeFile(t, ""), "replicate"); err != nil {
		t.Fatalf("an empty config file: %v", err)
	}
	if _, err := parse(t, "--config", writeFile(t, "replicate-http-addr: ':1'\nencode:\n  http-addr: ':2'\n"), "encode"); err != nil {
		t.Fatalf("flat and nested command keys: %v", err)
	}
}
